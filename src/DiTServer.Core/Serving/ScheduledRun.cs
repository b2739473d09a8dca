using DiTServer.Core.Sampling;

namespace DiTServer.Core.Serving;

/// <summary>A request the scheduler has admitted, as the scheduler sees it: its device, client, cost and progress.
/// Plain data, no tensors: the runner keeps the run's tensor state (<see cref="ModelRunner"/>) keyed by this object.</summary>
public sealed class ScheduledRun
{
    private readonly int[] rowsPerStep;

    public ScheduledRun(GenerationRequest request, int device, long admittedAt)
    {
        Request = request;
        Device = device;
        AdmittedAt = admittedAt;
        rowsPerStep = StepTimesteps.RowsPerStep(request.Parameters.Sampling, request.Parameters.NumImages, request.Parameters.Strength);
    }

    public GenerationRequest Request { get; }
    /// <summary>The device whose engine runs it (index into the scheduler's devices).</summary>
    public int Device { get; }
    public string Client => Request.Client;
    /// <summary>Rows it may add to a forward: one per image, two when guided. Admission counts these.</summary>
    public int Rows => Request.Parameters.RowsPerStep;
    /// <summary>Rows it adds to the next forward: fewer than <see cref="Rows"/> while a guided run is outside its
    /// guidance interval (one unguided row per image). Known without tensors (<see cref="StepTimesteps"/>).</summary>
    public int StepRows => StepsDone < TotalSteps ? rowsPerStep[StepsDone] : 0;
    /// <summary>Rows of the last forward it was picked for, which fair sharing counts; written when the scheduler picks it.</summary>
    public int LastStepRows { get; internal set; }
    /// <summary>Most bytes its feature cache holds (<see cref="GenerationParameters.CacheBytes"/>); admission counts these.</summary>
    public long CacheBytes { get; internal init; }
    /// <summary>Steps it runs: fewer than it asked for when it edits an image (<see cref="GenerationParameters.StepsRun"/>).</summary>
    public int TotalSteps => Request.Parameters.StepsRun;
    /// <summary>Steps done, counted by the scheduler from the runner's outcomes.</summary>
    public int StepsDone { get; internal set; }
    /// <summary>Steps in which it was left out of the forward to share the batch with other clients (pausing never
    /// changes its pixels: its state and generator wait untouched).</summary>
    public int StepsPaused { get; internal set; }
    /// <summary>Timestamp of admission (the scheduler's <see cref="TimeProvider"/>).</summary>
    public long AdmittedAt { get; }
    /// <summary>Time it waited in the queue.</summary>
    public TimeSpan QueueWait { get; internal init; }

    public override string ToString() => $"{Request.Id} ({Client}, {Rows} rows, {StepsDone}/{TotalSteps})";
}
