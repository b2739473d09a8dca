using DiTServer.Core.Diffusion;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Sampling;

/// <summary>Samples latents for one request from start to finish (the single-request loop of sample.py).</summary>
public static class LatentSampler
{
    /// <summary>Respaced diffusion for a model: learned-range variance when the model learns sigma, else fixed-large.</summary>
    public static GaussianDiffusion DiffusionFor(DiTConfig config, int steps) =>
        GaussianDiffusion.Create(steps.ToString(), learnSigma: config.LearnSigma);

    /// <param name="edit">Image to image: where the run starts and what it keeps (owned by the run, so disposed here).</param>
    /// <returns>(n, C, H, W) final latents on the model's device; the caller disposes them.</returns>
    public static Tensor Sample(DiT model, IReadOnlyList<long> labels, SamplingOptions options, Device device, Action<int, int>? progress = null,
        EditStart? edit = null)
    {
        using var _ = inference_mode();
        using var run = new SamplingRun(options.IsSolver ? null : DiffusionFor(model.Config, options.Steps), model.Config, labels, options, device, edit);
        while (!run.Done)
        {
            using var scope = NewDisposeScope();
            // The server's batch forward with one run: guidance intervals and feature caching as there.
            var (output, _) = BatchForward.Run(model, [run], options.Guidance);
            run.Advance(output);
            progress?.Invoke(run.StepsDone, run.TotalSteps);
        }
        return run.X.clone(); // belongs to the caller's dispose scope, if any
    }
}
