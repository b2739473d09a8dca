using System.ComponentModel;

namespace DiTServer.Api.Endpoints;

/// <summary>The multipart body of <c>POST /v1/images/edits</c>, for the OpenAPI document (<see cref="OpenAIImageForm"/>
/// reads it): its own fields beside the shared ones of <see cref="OpenAIImageUploadForm"/>. The extras of
/// <c>/v1/images/generations</c> (steps, cfg_scale, sampler, …) are taken too.</summary>
public sealed record OpenAIImageEditForm : OpenAIImageUploadForm
{
    public const string Example = """{"prompt": "Sandal", "n": 1, "response_format": "b64_json", "strength": 0.75, "seed": 42}""";

    [Description("Optional PNG of the picture's size: its transparent pixels are redrawn, opaque ones kept")]
    public IFormFile? Mask { get; init; }
    [Description("A class name or index (see GET /v1/classes); required")]
    public required string Prompt { get; init; }
    [Description("Extra: 0 < s ≤ 1, the share of the schedule run again; default 1 with a mask, 0.75 without")]
    public double? Strength { get; init; }
}
