using DiTServer.Core.Diffusion;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Schedules, respacing, RNG, training loss and full sampling runs against the official diffusion code.</summary>
public class DiffusionParityTests
{
    [Theory]
    [InlineData(10)]
    [InlineData(50)]
    [InlineData(250)]
    public void Respaced_schedule_matches_official(int steps)
    {
        using var scope = NewDisposeScope();
        var f = Fixtures.Load($"schedule-{steps}.safetensors");
        var d = GaussianDiffusion.Create(steps.ToString());
        Assert.Equal(f["timestep_map"].data<long>().ToArray(), d.TimestepMap.Select(i => (long)i).ToArray());
        Fixtures.AssertClose(f["betas"], AsTensor(d.Betas), 1e-6);
        Fixtures.AssertClose(f["alphas_cumprod"], AsTensor(d.AlphasCumprod), 1e-6);
        Fixtures.AssertClose(f["posterior_variance"], AsTensor(d.PosteriorVariance), 1e-6);
        Fixtures.AssertClose(f["posterior_log_variance_clipped"], AsTensor(d.PosteriorLogVarianceClipped), 1e-6);
        Fixtures.AssertClose(f["posterior_mean_coef1"], AsTensor(d.PosteriorMeanCoef1), 1e-6);
        Fixtures.AssertClose(f["posterior_mean_coef2"], AsTensor(d.PosteriorMeanCoef2), 1e-6);
    }

    [Theory]
    [InlineData(1000)]
    [InlineData(250)]
    [InlineData(50)]
    [InlineData(25)]
    [InlineData(10)]
    [InlineData(7)]
    public void Float64_tables_match_official_numpy(int steps)
    {
        using var scope = NewDisposeScope();
        var f = Fixtures.Load($"extra/diffusion_tables/respaced_{steps}.safetensors");
        var d = GaussianDiffusion.Create(steps.ToString());
        var tables = new Dictionary<string, double[]>
        {
            ["betas"] = d.Betas, ["alphas_cumprod"] = d.AlphasCumprod, ["alphas_cumprod_prev"] = d.AlphasCumprodPrev,
            ["posterior_variance"] = d.PosteriorVariance, ["posterior_log_variance_clipped"] = d.PosteriorLogVarianceClipped,
            ["posterior_mean_coef1"] = d.PosteriorMeanCoef1, ["posterior_mean_coef2"] = d.PosteriorMeanCoef2,
            ["sqrt_alphas_cumprod"] = d.SqrtAlphasCumprod, ["sqrt_one_minus_alphas_cumprod"] = d.SqrtOneMinusAlphasCumprod,
            ["sqrt_recip_alphas_cumprod"] = d.SqrtRecipAlphasCumprod, ["sqrt_recipm1_alphas_cumprod"] = d.SqrtRecipm1AlphasCumprod,
            ["log_betas"] = d.LogBetas,
        };
        foreach (var (name, ours) in tables)
        {
            var reference = f[name].data<double>().ToArray();
            Assert.Equal(reference.Length, ours.Length);
            for (int i = 0; i < ours.Length; i++)
                Assert.True(Math.Abs(ours[i] - reference[i]) <= 1e-12 * Math.Max(1, Math.Abs(reference[i])), $"{name}[{i}]: {ours[i]} vs {reference[i]}");
        }
        Assert.Equal(f["timestep_map"].data<long>().ToArray(), d.TimestepMap.Select(i => (long)i).ToArray());
    }

    [Fact]
    public void Respacing_matches_official_for_every_step_count()
    {
        using var scope = NewDisposeScope();
        var f = Fixtures.Load("extra/diffusion_tables/all_timestep_maps.safetensors");
        var all = f["timesteps"].to_type(int64).data<long>().ToArray();
        var offsets = f["offsets"].to_type(int64).data<long>().ToArray();
        int mismatches = 0;
        for (int s = 1; s <= 1000; s++)
        {
            long from = offsets[s - 1], to = offsets[s];
            var expected = all[(int)from..(int)to];
            var ours = Respacing.SpaceTimesteps(1000, s.ToString()).Select(i => (long)i).ToArray();
            if (!expected.SequenceEqual(ours)) mismatches++;
        }
        Assert.Equal(0, mismatches);
        Assert.Equal(new[] { 0, 166, 333, 500, 666, 832, 999 }, Respacing.SpaceTimesteps(1000, "7"));
    }

    [Fact]
    public void Seeded_generator_draws_official_numbers()
    {
        using var scope = NewDisposeScope();
        var f = Fixtures.Load("rng.safetensors");
        foreach (var seed in new[] { 0, 42, 2024 })
        {
            using var g = new Generator((ulong)seed);
            var ours = randn(new long[] { 2, 4, 8, 8 }, generator: g);
            Assert.True(ours.equal(f[$"seed{seed}"]).all().item<bool>(), $"seed {seed}");
        }
    }

    [Theory]
    [InlineData("dit-tiny/train_loss.safetensors", "dit-tiny/model.pt")]
    [InlineData("extra/train_loss/train_loss.safetensors", "extra/dit_tiny/model.pt")]
    public void Training_loss_terms_match_official(string lossFile, string weights)
    {
        using var model = DiTParityTests.LoadTiny(weights);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var f = Fixtures.Load(lossFile);
        var d = GaussianDiffusion.Create("");
        var terms = d.TrainingLosses((xt, t) => model.forward(xt, t, f["y"]), f["x_start"], f["t"], f["noise"]);
        Fixtures.AssertClose(f["mse"], terms.Mse);
        Fixtures.AssertClose(f["vb"], terms.Vb!);
        Fixtures.AssertClose(f["loss"], terms.Loss);
        if (f.ContainsKey("x_t")) Fixtures.AssertClose(f["x_t"], d.QSample(f["x_start"], f["t"], f["noise"]), 1e-6);
    }

    public static IEnumerable<object[]> SampleCases() =>
        Enumerable.Range(0, 4).Select(k => new object[] { k });

    [Theory]
    [MemberData(nameof(SampleCases))]
    public void Sampling_from_the_seed_reproduces_official_samples(int k)
    {
        using var model = DiTParityTests.LoadTiny("dit-tiny/model.pt");
        using var scope = NewDisposeScope();
        var f = Fixtures.Load($"dit-tiny/sample-{k}.safetensors");
        var options = Fixtures.SampleOptions(k);
        var labels = f["labels"].data<long>().ToArray();
        var samples = LatentSampler.Sample(model, labels, options, CPU);
        double maxRef = f["samples"].abs().max().item<float>();
        double maxDiff = (samples - f["samples"]).abs().max().item<float>();
        Assert.True(maxDiff <= 1e-4 * maxRef, $"max |Δ| {maxDiff:E3} > 1e-4·max|ref| ({maxRef:E3})");
        Fixtures.AssertClose(f["samples"], samples);
    }

    [Theory]
    [InlineData("ddpm_10_cfg4", 4.0)]
    [InlineData("ddpm_250_cfg4", 4.0)]
    [InlineData("ddim_10_cfg4", 4.0)]
    [InlineData("ddim_250_cfg4", 4.0)]
    [InlineData("ddpm_10_cfg1.5_x3", 1.5)]
    [InlineData("ddpm_10_nocfg", 1.0)]
    public void Replaying_recorded_noise_reproduces_every_official_step(string name, double cfg) =>
        ReplayRecorded(name, cfg, step =>
        {
            var (f, d, s, x) = (step.Fixture, step.Diffusion, step.Index, step.X);
            Assert.Equal(f["model_t"][s].item<long>(), d.TimestepMap[step.I]);
            var next = step.Ddim ? d.DdimStep(step.Output, x, step.T, 0, null) : d.DdpmStep(step.Output, x, step.T, step.Noise!);
            double maxRef = f["trajectory"][s].abs().max().item<float>();
            double maxDiff = (next - f["trajectory"][s]).abs().max().item<float>();
            Assert.True(maxDiff <= 1e-4 * maxRef, $"step {s}: max |Δ| {maxDiff:E3} > 1e-4·max|ref| ({maxRef:E3})");
            return next;
        });

    /// <summary>One step of a recorded official sampling run (extra/dit_tiny_sampling): <see cref="Output"/> is our
    /// model's guided output for <see cref="X"/> at respaced index <see cref="I"/> (<see cref="T"/> as a tensor);
    /// <see cref="Noise"/> is the step's recorded DDPM noise (null for DDIM).</summary>
    internal sealed record ReplayedStep(int Index, int I, Tensor T, Tensor Output, Tensor X, Tensor? Noise, GaussianDiffusion Diffusion, bool Ddim,
        Dictionary<string, Tensor> Fixture);

    /// <summary>Replays a recorded run step by step on the fixture model: <paramref name="advance"/> checks a step and
    /// returns the next x_t. Everything lives in one dispose scope under inference mode.</summary>
    internal static void ReplayRecorded(string name, double cfg, Func<ReplayedStep, Tensor> advance)
    {
        using var model = DiTParityTests.LoadTiny("extra/dit_tiny/model.pt");
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var f = Fixtures.Load($"extra/dit_tiny_sampling/{name}.safetensors");
        var labels = f["labels"];
        int n = (int)labels.shape[0];
        bool ddim = name.StartsWith("ddim");
        var steps = (int)f["model_t"].shape[0];
        var d = GaussianDiffusion.Create(steps.ToString());
        var x = f["initial_noise"];
        var scales = Enumerable.Repeat(cfg, n).ToArray();
        for (int s = 0; s < steps; s++)
        {
            int i = steps - 1 - s;
            var t = full(n, (long)i, dtype: int64);
            var output = Denoiser.Forward(model, x, full(n, (long)d.TimestepMap[i], dtype: int64), labels, scales, GuidanceMode.Official);
            // sample.py keeps the first half of the doubled batch, so its first n noise rows are ours.
            var noise = ddim ? null : f["step_noise"][s][..n];
            x = advance(new ReplayedStep(s, i, t, output, x, noise, d, ddim, f));
        }
    }

    [Fact]
    public void Fixed_variance_model_samples_without_learned_sigma()
    {
        // A model without learned sigma uses FIXED_LARGE (create_diffusion(learn_sigma=False)); output has C channels.
        var config = DiTParityTests.TinyConfig with { LearnSigma = false };
        using var model = new DiT(config);
        using var scope = NewDisposeScope();
        var d = LatentSampler.DiffusionFor(config, 5);
        Assert.Equal(VarianceType.FixedLarge, d.VarianceType);
        var samples = LatentSampler.Sample(model, new long[] { 1, 2 }, new SamplingOptions { Steps = 5, Seed = 3 }, CPU);
        Assert.Equal(new long[] { 2, 4, 8, 8 }, samples.shape);
        Assert.False(samples.isnan().any().item<bool>());
    }

    [Fact]
    public void Ddim_with_eta_uses_noise_and_stays_deterministic_per_seed()
    {
        using var model = DiTParityTests.LoadTiny("dit-tiny/model.pt");
        using var scope = NewDisposeScope();
        var o = new SamplingOptions { Sampler = SamplerKind.Ddim, Steps = 6, CfgScale = 2.0, Eta = 0.5, Seed = 11 };
        var a = LatentSampler.Sample(model, new long[] { 3 }, o, CPU);
        var b = LatentSampler.Sample(model, new long[] { 3 }, o, CPU);
        var eta0 = LatentSampler.Sample(model, new long[] { 3 }, o with { Eta = 0 }, CPU);
        Assert.True(a.equal(b).all().item<bool>());
        Assert.False(a.allclose(eta0, 1e-4, 1e-4));
    }

    private static Tensor AsTensor(double[] values) => tensor(values).to_type(float32);
}
