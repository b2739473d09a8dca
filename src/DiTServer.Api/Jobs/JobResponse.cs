using System.Text.Json.Serialization;
using DiTServer.Core.Sampling;

namespace DiTServer.Api.Jobs;

/// <summary>A job as <c>POST/GET/DELETE /v1/jobs</c> answer it and as the <c>data</c> of every event; absent fields are omitted.</summary>
public sealed record JobResponse(
    string Id,
    string State,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? QueuePosition,
    int Step,
    int TotalSteps,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ResultUrl,
    DateTimeOffset CreatedAt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTimeOffset? StartedAt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTimeOffset? FinishedAt,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JobParameters? Parameters)
{
    public static JobResponse From(Job job, JobSnapshot s, long? queuePosition, LoadedModel? model) => new(
        job.Id, s.State.Name(), s.State == JobState.Queued ? queuePosition : null, s.Step, s.TotalSteps, s.Error,
        s.State == JobState.Succeeded ? $"/v1/jobs/{job.Id}/result" : null, s.CreatedAt, s.StartedAt, s.FinishedAt,
        model is null ? null : JobParameters.From(job, model));
}

/// <summary>The validated request a job runs (the seed always filled in).</summary>
public sealed record JobParameters(
    int ClassLabel,
    string ClassName,
    int NumImages,
    int Steps,
    double CfgScale,
    long Seed,
    string Sampler,
    string Guidance,
    double Eta,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Spacing,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? Order,
    // "unipc", as the sampler is named, where the naming policy would split "UniPc" into uni_pc
    [property: JsonPropertyName("unipc_variant"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? UniPcVariant,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double[]? GuidanceInterval,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? Thresholding,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? PreviewEvery,
    // Image to image: the strength, and what the mask redraws ("K of N pixels redrawn"); the images themselves stay out.
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? Strength = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Mask = null)
{
    public static JobParameters From(Job job, LoadedModel model)
    {
        var p = job.Parameters;
        var s = p.Sampling;
        return new(p.ClassLabel, model.Classes[p.ClassLabel], p.NumImages, s.Steps, s.CfgScale, s.Seed,
            s.Sampler.Name(), s.Guidance.ToString().ToLowerInvariant(), s.Eta,
            // The solver settings in effect (defaults filled in), present only for the samplers they apply to.
            s.IsSolver ? s.EffectiveSpacing.Name() : null, s.IsSolver ? s.EffectiveOrder : null,
            s.Sampler == SamplerKind.UniPc ? s.EffectiveUniPcVariant.Name() : null,
            s.GuidanceInterval is { } gi ? [gi.Lo, gi.Hi] : null, s.Thresholding ? true : null,
            job.PreviewEvery > 0 ? job.PreviewEvery : null, p.Edit?.Strength, p.Edit?.MaskSummary());
    }
}
