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

    public void Dispose() => Run.Dispose();
}
