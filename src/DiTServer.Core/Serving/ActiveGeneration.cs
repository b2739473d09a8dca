using System.Diagnostics;
using DiTServer.Core.Sampling;

namespace DiTServer.Core.Serving;

/// <summary>A request the worker has admitted: its sampling run (latents + generator) and when it started.</summary>
internal sealed class ActiveGeneration(GenerationRequest request, SamplingRun run) : IDisposable
{
    public GenerationRequest Request { get; } = request;
    public SamplingRun Run { get; } = run;
    public long AdmittedAt { get; } = Stopwatch.GetTimestamp();
    public int Rows => Request.Parameters.RowsPerStep;
    /// <summary>Completes when every preview handed to the thread pool so far has been encoded and delivered; the
    /// finished images are encoded after it, so no preview reaches the request's sink after its result.</summary>
    public Task PreviewsDelivered { get; set; } = Task.CompletedTask;

    public void Dispose() => Run.Dispose();
}
