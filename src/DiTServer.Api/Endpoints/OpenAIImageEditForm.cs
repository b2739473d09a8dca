using System.ComponentModel;

namespace DiTServer.Api.Endpoints;

/// <summary>The multipart body of <c>POST /v1/images/edits</c>, for the OpenAPI document (<see cref="OpenAIImageForm"/>
/// reads it). The extras of <c>/v1/images/generations</c> (seed, steps, cfg_scale, sampler, …) are taken too.</summary>
public sealed record OpenAIImageEditForm
{
    public const string Example = """{"prompt": "Sandal", "n": 1, "response_format": "b64_json", "strength": 0.75, "seed": 42}""";

    [Description("The picture: a PNG file, square; another size than the model's is resized to it")]
    public required IFormFile Image { get; init; }
    [Description("Optional PNG of the picture's size: its transparent pixels are redrawn, opaque ones kept")]
    public IFormFile? Mask { get; init; }
    [Description("A class name or index (see GET /v1/classes); required")]
    public required string Prompt { get; init; }
    [Description("Number of images, 1..Serving:MaxImagesPerRequest; default 1")]
    public int? N { get; init; }
    [Description("Must be the model's resolution, e.g. \"256x256\" (GET /v1/models: image_size)")]
    public string? Size { get; init; }
    [Description("b64_json (default) or url")]
    public string? ResponseFormat { get; init; }
    [Description("Accepted and ignored")]
    public string? User { get; init; }
    [Description("Extra: 0 < s ≤ 1, the share of the schedule run again; default 1 with a mask, 0.75 without")]
    public double? Strength { get; init; }
    [Description("Extra: int64 ≥ 0; random when absent")]
    public long? Seed { get; init; }
}
