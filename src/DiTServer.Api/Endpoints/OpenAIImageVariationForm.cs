using System.ComponentModel;

namespace DiTServer.Api.Endpoints;

/// <summary>The multipart body of <c>POST /v1/images/variations</c>, for the OpenAPI document (<see cref="OpenAIImageForm"/>
/// reads it): its own fields beside the shared ones of <see cref="OpenAIImageUploadForm"/>. The extras of
/// <c>/v1/images/generations</c> (steps, cfg_scale, sampler, …) are taken too. There is no prompt: the class is the one
/// the model finds most likely in the picture.</summary>
public sealed record OpenAIImageVariationForm : OpenAIImageUploadForm
{
    public const string Example = """{"n": 2, "response_format": "b64_json", "strength": 0.75, "seed": 42}""";

    [Description("Extra: 0 < s ≤ 1, the share of the schedule run again; default 0.75")]
    public double? Strength { get; init; }
}
