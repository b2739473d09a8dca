using System.ComponentModel;

namespace DiTServer.Api.Endpoints;

/// <summary>The multipart body of <c>POST /v1/images/variations</c>, for the OpenAPI document (<see cref="OpenAIImageForm"/>
/// reads it). The extras of <c>/v1/images/generations</c> (seed, steps, cfg_scale, sampler, …) are taken too.</summary>
public sealed record OpenAIImageVariationForm
{
    public const string Example = """{"n": 2, "response_format": "b64_json", "strength": 0.75, "seed": 42}""";

    [Description("The picture: a PNG file, square; another size than the model's is resized to it. Its class is the one the model finds most likely")]
    public required IFormFile Image { get; init; }
    [Description("Number of images, 1..Serving:MaxImagesPerRequest; default 1")]
    public int? N { get; init; }
    [Description("Must be the model's resolution, e.g. \"256x256\" (GET /v1/models: image_size)")]
    public string? Size { get; init; }
    [Description("b64_json (default) or url")]
    public string? ResponseFormat { get; init; }
    [Description("Accepted and ignored")]
    public string? User { get; init; }
    [Description("Extra: 0 < s ≤ 1, the share of the schedule run again; default 0.75")]
    public double? Strength { get; init; }
    [Description("Extra: int64 ≥ 0; random when absent")]
    public long? Seed { get; init; }
}
