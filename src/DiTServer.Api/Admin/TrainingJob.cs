using System.Text.Json.Serialization;

namespace DiTServer.Api.Admin;

[JsonConverter(typeof(JsonStringEnumConverter<TrainingJobState>))]
/// <summary><c>Interrupted</c>: found on disk at start with a checkpoint short of its step count (the process stopped
/// while it trained); it can be resumed like a cancelled one.</summary>
public enum TrainingJobState { Running, Succeeded, Failed, Cancelled, Interrupted }

/// <summary>One training job's public state, updated by its training thread.</summary>
public sealed class TrainingJob
{
    private readonly object gate = new();
    private TrainingJobStatus status;

    /// <param name="output">The output folder relative to <c>Training:OutputRoot</c>, as the API shows it.</param>
    public TrainingJob(string id, string outputFolder, string output, long totalSteps, DateTimeOffset startedAt)
    {
        Id = id;
        OutputFolder = outputFolder;
        status = new TrainingJobStatus(id, TrainingJobState.Running, 0, totalSteps, null, null, null, null, null, startedAt, null, null, output);
    }

    public string Id { get; }
    public string OutputFolder { get; }
    public CancellationTokenSource Cancel { get; } = new();
    /// <summary>Completes when the job's thread has ended and has disposed every tensor it owned; shutdown awaits it.</summary>
    public Task Finished => finished.Task;
    private readonly TaskCompletionSource finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    internal void MarkFinished() => finished.TrySetResult();
    public TrainingJobStatus Status { get { lock (gate) return status; } }

    public void Update(Func<TrainingJobStatus, TrainingJobStatus> change)
    {
        lock (gate) status = change(status);
    }
}

/// <summary>What <c>GET /v1/admin/training/jobs/{id}</c> returns.</summary>
public sealed record TrainingJobStatus(
    string Id,
    TrainingJobState State,
    long Step,
    long TotalSteps,
    double? Loss,
    // the unit that training logs print (it/s), shorter than steps_per_second
    [property: JsonPropertyName("it_per_s")] double? StepsPerSecond,
    double? EtaSeconds,
    string? LastCheckpoint,
    string? Error,
    DateTimeOffset StartedAt,
    DateTimeOffset? FinishedAt,
    string? ExportedModel,
    string? Output = null);
