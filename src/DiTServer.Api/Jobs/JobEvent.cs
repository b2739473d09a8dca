namespace DiTServer.Api.Jobs;

/// <summary>One Server-Sent Event of a job: its type (<c>queued</c>, <c>progress</c>, <c>preview</c>, <c>done</c>,
/// <c>failed</c>, <c>cancelled</c>) and the job's status at that moment; a <c>preview</c> also carries its images.</summary>
public sealed record JobEvent(string Type, JobSnapshot Status, GenerationPreview? Preview = null)
{
    public const string PreviewType = "preview";

    public bool IsFinal => Status.State.IsFinal();

    /// <summary>The event a state change produces.</summary>
    public static JobEvent For(JobSnapshot status) => new(status.State switch
    {
        JobState.Queued => "queued",
        JobState.Running => "progress",
        JobState.Succeeded => "done",
        JobState.Failed => "failed",
        _ => "cancelled",
    }, status);
}

/// <summary>A consistent copy of a job's changing fields, taken under its lock.</summary>
public sealed record JobSnapshot(JobState State, int Step, int TotalSteps, string? Error,
    DateTimeOffset CreatedAt, DateTimeOffset? StartedAt, DateTimeOffset? FinishedAt);
