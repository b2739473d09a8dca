namespace DiTServer.Core.Serving;

/// <summary>The scheduler's plan for one step of one device (vLLM's <c>SchedulerOutput</c>): plain data, no tensors.</summary>
/// <param name="Device">The device it plans for.</param>
/// <param name="Admitted">Taken from the queue this step; the runner starts each (or reports it failed).</param>
/// <param name="Ended">Requests that leave without finishing: cancelled (Error null) or failed with the error. Running
/// ones among them are out of the running set already; the runner frees their state.</param>
/// <param name="Batch">The runs of this step's forward, within <see cref="ServingOptions.MaxBatchRows"/>.</param>
/// <param name="Previewing">Runs of <see cref="Batch"/> whose request wants a preview after this step.</param>
/// <param name="Swap">Set when the device has paused for a weight swap and nothing runs: copy the weights in now,
/// then <see cref="Scheduler.EndSwap"/>. The plan then has no batch.</param>
public sealed record SchedulerOutput(
    int Device,
    IReadOnlyList<ScheduledRun> Admitted,
    IReadOnlyList<EndedRequest> Ended,
    IReadOnlyList<ScheduledRun> Batch,
    IReadOnlySet<ScheduledRun> Previewing,
    EngineMessage.Swap? Swap)
{
    /// <summary>Running runs left out of this forward to share it with other clients.</summary>
    public int Paused { get; init; }

    /// <summary>Rows of this step's forward (guidance intervals included).</summary>
    public int BatchRows => Batch.Sum(r => r.LastStepRows);
}

/// <summary>A request leaving without a result: <see cref="Run"/> is set when it had been admitted.</summary>
public sealed record EndedRequest(GenerationRequest Request, ScheduledRun? Run, GenerationException? Error)
{
    /// <summary>An admitted run that failed in the model's code (<paramref name="what"/>: "generation failed", "decoding failed").</summary>
    public static EndedRequest Failed(ScheduledRun run, string what, Exception e) =>
        new(run.Request, run, e as GenerationException ?? new GenerationException(
            e is Sampling.NonFiniteSampleException ? GenerationFailure.NonFinite : GenerationFailure.Error, $"{what}: {e.Message}", e));
}

/// <summary>What the scheduler made of a step's outcome: the runs that finished (with their images) and those that
/// failed.</summary>
public sealed record SchedulerUpdate(IReadOnlyList<FinishedRun> Finished, IReadOnlyList<EndedRequest> Ended);

/// <summary>A run that reached its last step, with its decoded images (HWC bytes, one per image).</summary>
public sealed record FinishedRun(ScheduledRun Run, byte[][] Images);
