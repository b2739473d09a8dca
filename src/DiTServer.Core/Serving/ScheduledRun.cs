using System.Diagnostics;
using DiTServer.Core.Sampling;

namespace DiTServer.Core.Serving;

/// <summary>A request the scheduler has admitted: its client, cost and progress, as the scheduler sees them (no tensors),
/// plus the <see cref="SamplingRun"/> the runner attached to it (latents, generator, solver history).</summary>
public sealed class ScheduledRun
{
    public ScheduledRun(GenerationRequest request, long admittedAt)
    {
        Request = request;
        AdmittedAt = admittedAt;
    }

    public GenerationRequest Request { get; }
    public string Client => Request.Client;
    /// <summary>Rows it adds to a forward when it takes part: one per image, two when guided.</summary>
    public int Rows => Request.Parameters.RowsPerStep;
    /// <summary>Rows it adds to the next forward: fewer than <see cref="Rows"/> while a guided run is outside its
    /// guidance interval (one unguided row per image). Admission counts <see cref="Rows"/>, each forward this.</summary>
    public int StepRows => Sampling is { Done: false } sampling ? sampling.RowsThisStep : Rows;
    /// <summary>Rows of its latest forward, which fair sharing counts: the scheduler's plan (<see cref="StepRows"/> when
    /// picked), made exact by the runner just before the forward (a run admitted this step has no sampler state at planning).</summary>
    public int LastStepRows { get; internal set; }
    public int TotalSteps => Request.Parameters.Sampling.Steps;
    /// <summary>Steps done, counted by the scheduler from the runner's outcomes.</summary>
    public int StepsDone { get; internal set; }
    /// <summary>Steps in which it was left out of the forward to share the batch with other clients (pausing never
    /// changes its pixels: its state and generator wait untouched).</summary>
    public int StepsPaused { get; internal set; }
    /// <summary><see cref="Stopwatch"/> timestamp of admission.</summary>
    public long AdmittedAt { get; }
    /// <summary>The runner's state for this run; null until the runner has started it (and in tensor-free tests).</summary>
    public SamplingRun? Sampling { get; set; }
    /// <summary>Completes when every preview handed to the thread pool so far has been delivered; the finished images
    /// are encoded after it, so no preview reaches the request's sink after its result.</summary>
    public Task PreviewsDelivered { get; set; } = Task.CompletedTask;

    /// <summary>Frees the runner's state (worker thread only).</summary>
    public void Release()
    {
        Sampling?.Dispose();
        Sampling = null;
    }

    public override string ToString() => $"{Request.Id} ({Client}, {Rows} rows, {StepsDone}/{TotalSteps})";
}
