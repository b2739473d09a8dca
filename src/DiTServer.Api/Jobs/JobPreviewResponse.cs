namespace DiTServer.Api.Jobs;

/// <summary>The <c>data</c> of a <c>preview</c> event: after <c>step</c> of <c>total_steps</c>, one small PNG per image
/// (in the order of the result's images), each <c>width</c>×<c>height</c>, made from the model's predicted x₀.</summary>
public sealed record JobPreviewResponse(
    string Id,
    int Step,
    int TotalSteps,
    int Width,
    int Height,
    IReadOnlyList<JobPreviewImage> Images)
{
    public static JobPreviewResponse From(Job job, GenerationPreview p) => new(job.Id, p.Step, p.TotalSteps, p.Width, p.Height,
        p.Pngs.Select((png, i) => new JobPreviewImage(i, Convert.ToBase64String(png))).ToList());
}

/// <summary>One image's preview.</summary>
public sealed record JobPreviewImage(
    int Index,
    string PngBase64);
