using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Serving;

/// <summary>Test seam: sees each run's slice of every batched forward before its sampler update, and may throw or
/// overwrite the slice (e.g. with NaN) to fault one request. Never registered in production (the runner's is null).</summary>
public interface IRunnerFaultInjector
{
    /// <param name="run">The run whose rows <paramref name="output"/> holds.</param>
    /// <param name="output">(n, C_out, H, W), the model output for this run's rows (guidance already applied).</param>
    void OnForward(SamplingRun run, Tensor output);
}
