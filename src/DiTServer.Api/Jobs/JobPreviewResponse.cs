using System.Text.Json.Serialization;
using DiTServer.Core.Serving;

namespace DiTServer.Api.Jobs;

/// <summary>The <c>data</c> of a <c>preview</c> event: after <c>step</c> of <c>total_steps</c>, one small PNG per image
/// (in the order of the result's images), each <c>width</c>×<c>height</c>, made from the model's predicted x₀.</summary>
public sealed record JobPreviewResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("step")] int Step,
    [property: JsonPropertyName("total_steps")] int TotalSteps,
    [property: JsonPropertyName("width")] int Width,
    [property: JsonPropertyName("height")] int Height,
    [property: JsonPropertyName("images")] IReadOnlyList<JobPreviewImage> Images)
{
    public static JobPreviewResponse From(Job job, GenerationPreview p) => new(job.Id, p.Step, p.TotalSteps, p.Width, p.Height,
        p.Pngs.Select((png, i) => new JobPreviewImage(i, Convert.ToBase64String(png))).ToList());
}

/// <summary>One image's preview.</summary>
public sealed record JobPreviewImage(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("png_base64")] string PngBase64);
