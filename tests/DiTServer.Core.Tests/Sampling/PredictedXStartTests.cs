using DiTServer.Core.Diffusion;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The predicted x₀ that step previews show: the sampler's <c>pred_xstart</c> equals the official code's at
/// every step, and keeping it changes nothing about the sampling.</summary>
public class PredictedXStartTests
{
    [Theory]
    [InlineData("ddpm_10_cfg4", 4.0)]
    [InlineData("ddim_10_cfg4", 4.0)]
    [InlineData("ddpm_10_cfg1.5_x3", 1.5)]
    [InlineData("ddpm_10_nocfg", 1.0)]
    public void Pred_xstart_of_every_step_matches_official(string name, double cfg) =>
        DiffusionParityTests.ReplayRecorded(name, cfg, replayed =>
        {
            var (f, d, s, i, x, output) = (replayed.Fixture, replayed.Diffusion, replayed.Index, replayed.I, replayed.X, replayed.Output);
            var step = replayed.Ddim ? d.DdimSample(output, x, replayed.T, 0, null) : d.PSample(output, x, replayed.T, replayed.Noise!);
            double maxRef = f["pred_xstart"][s].abs().max().item<float>();
            double maxDiff = (step.PredXStart - f["pred_xstart"][s]).abs().max().item<float>();
            Assert.True(maxDiff <= 1e-4 * maxRef, $"step {s}: pred_xstart max |Δ| {maxDiff:E3} > 1e-4·max|ref| ({maxRef:E3})");
            // The official formula, written out from the float64 tables: x̂₀ = √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·ε.
            var eps = output[.., ..4];
            var byHand = (float)Math.Sqrt(1 / d.AlphasCumprod[i]) * x - (float)Math.Sqrt(1 / d.AlphasCumprod[i] - 1) * eps;
            Assert.True(allclose(step.PredXStart, byHand, rtol: 1e-5, atol: 1e-5), $"step {s}: pred_xstart differs from the formula");
            // The sample is exactly what the plain step returns.
            var plain = replayed.Ddim ? d.DdimStep(output, x, replayed.T, 0, null) : d.DdpmStep(output, x, replayed.T, replayed.Noise!);
            Assert.True(step.Sample.equal(plain).all().item<bool>(), $"step {s}: the sample changed");
            return step.Sample;
        });

    [Theory]
    [InlineData(SamplerKind.Ddpm, 0.0)]
    [InlineData(SamplerKind.Ddim, 0.0)]
    [InlineData(SamplerKind.Ddim, 0.5)]
    public void Keeping_pred_xstart_changes_neither_the_samples_nor_the_draws(SamplerKind sampler, double eta)
    {
        using var model = DiTParityTests.LoadTiny("dit-tiny/model.pt");
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var options = new SamplingOptions { Sampler = sampler, Eta = eta, Steps = 6, CfgScale = 4, Seed = 99 };
        var diffusion = LatentSampler.DiffusionFor(model.Config, options.Steps);
        using var plain = new SamplingRun(diffusion, model.Config, [3, 5], options, CPU);
        using var kept = new SamplingRun(diffusion, model.Config, [3, 5], options, CPU);
        var scales = new[] { 4.0, 4.0 };
        while (!plain.Done)
        {
            var output = Denoiser.Forward(model, plain.X, plain.ModelTimesteps(), plain.LabelTensor(), scales, GuidanceMode.Official);
            plain.Advance(output);
            kept.Advance(output, keepPredictedXStart: true);
            Assert.Null(plain.PredictedXStart);
            Assert.Equal(plain.X.shape, kept.PredictedXStart!.shape);
            Assert.True(plain.X.equal(kept.X).all().item<bool>(), $"step {plain.StepsDone}: keeping x̂₀ changed the sample");
        }
        // At t = 0 the posterior mean is x̂₀ itself (coef1 = 1, coef2 = 0) and no noise is added: the last x̂₀ is the result.
        Assert.True(allclose(kept.PredictedXStart!, kept.X, rtol: 1e-6, atol: 1e-6), "the final x̂₀ is not the final sample");
    }
}
