namespace DiTServer.Core.Serving;

/// <summary>The scheduler's plan for one engine step (vLLM's <c>SchedulerOutput</c>): what to start, what to drop,
/// and which runs go into this step's forward.</summary>
/// <param name="Admitted">Taken from the queue this step; the runner must start each (or the engine fails it).</param>
/// <param name="Ended">Requests that leave without finishing: cancelled (Error null) or failed with the error. Running
/// ones among them are out of <see cref="Scheduler.Running"/> already; their runner state must be released.</param>
/// <param name="Batch">The runs of this step's forward, within <see cref="ServingOptions.MaxBatchRows"/>.</param>
public sealed record SchedulerOutput(
    IReadOnlyList<ScheduledRun> Admitted,
    IReadOnlyList<EndedRequest> Ended,
    IReadOnlyList<ScheduledRun> Batch)
{
    /// <summary>Rows of this step's forward (guidance intervals included), as planned or, once the runner has run it, as run.</summary>
    public int BatchRows => Batch.Sum(r => r.LastStepRows);
}

/// <summary>A request leaving without a result: <see cref="Run"/> is set when it had been admitted.</summary>
public sealed record EndedRequest(GenerationRequest Request, ScheduledRun? Run, GenerationException? Error)
{
    /// <summary>An admitted run that failed in the model's code (<paramref name="what"/>: "generation failed", "decoding failed").</summary>
    public static EndedRequest Failed(ScheduledRun run, string what, Exception e) =>
        new(run.Request, run, new GenerationException(
            e is Sampling.NonFiniteSampleException ? GenerationFailure.NonFinite : GenerationFailure.Error, $"{what}: {e.Message}", e));
}
