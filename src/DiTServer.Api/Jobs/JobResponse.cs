using DiTServer.Core.Pipeline;
using System.Text.Json.Serialization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;

namespace DiTServer.Api.Jobs;

/// <summary>A job as <c>POST/GET/DELETE /v1/jobs</c> answer it and as the <c>data</c> of every event; absent fields are omitted.</summary>
public sealed record JobResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("state")] string State,
    [property: JsonPropertyName("queue_position"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] long? QueuePosition,
    [property: JsonPropertyName("step")] int Step,
    [property: JsonPropertyName("total_steps")] int TotalSteps,
    [property: JsonPropertyName("error"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Error,
    [property: JsonPropertyName("result_url"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ResultUrl,
    [property: JsonPropertyName("created_at")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("started_at"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTimeOffset? StartedAt,
    [property: JsonPropertyName("finished_at"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] DateTimeOffset? FinishedAt,
    [property: JsonPropertyName("parameters"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JobParameters? Parameters)
{
    public static JobResponse From(Job job, JobSnapshot s, long? queuePosition, LoadedModel? model) => new(
        job.Id, s.State.Name(), s.State == JobState.Queued ? queuePosition : null, s.Step, s.TotalSteps, s.Error,
        s.State == JobState.Succeeded ? $"/v1/jobs/{job.Id}/result" : null, s.CreatedAt, s.StartedAt, s.FinishedAt,
        model is null ? null : JobParameters.From(job, model));
}

/// <summary>The validated request a job runs (the seed always filled in).</summary>
public sealed record JobParameters(
    [property: JsonPropertyName("class_label")] int ClassLabel,
    [property: JsonPropertyName("class_name")] string ClassName,
    [property: JsonPropertyName("num_images")] int NumImages,
    [property: JsonPropertyName("steps")] int Steps,
    [property: JsonPropertyName("cfg_scale")] double CfgScale,
    [property: JsonPropertyName("seed")] long Seed,
    [property: JsonPropertyName("sampler")] string Sampler,
    [property: JsonPropertyName("guidance")] string Guidance,
    [property: JsonPropertyName("eta")] double Eta,
    [property: JsonPropertyName("spacing"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Spacing,
    [property: JsonPropertyName("order"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? Order,
    [property: JsonPropertyName("unipc_variant"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? UniPcVariant,
    [property: JsonPropertyName("guidance_interval"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double[]? GuidanceInterval,
    [property: JsonPropertyName("thresholding"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? Thresholding,
    [property: JsonPropertyName("preview_every"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? PreviewEvery)
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
            job.PreviewEvery > 0 ? job.PreviewEvery : null);
    }
}
