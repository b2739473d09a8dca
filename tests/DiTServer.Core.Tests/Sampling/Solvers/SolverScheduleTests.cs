using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Diffusion;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using DiTServer.Tests.Shared;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The solvers' continuous-time schedule, time grids and dynamic thresholding, checked against their
/// definitions (the end-to-end parity with the authors' code is in <see cref="SolverParityTests"/>).</summary>
public class SolverScheduleTests
{
    private static readonly DiscreteVpSchedule Ns = DiscreteVpSchedule.Linear1000;

    [Fact]
    public void Log_alpha_is_the_official_cumulative_product_at_the_keypoints_and_the_model_time_is_fractional()
    {
        var ac = GaussianDiffusion.Create().AlphasCumprod;
        foreach (int i in new[] { 0, 1, 250, 998, 999 })
        {
            float t = (i + 1) / 1000f;
            Assert.Equal(0.5 * Math.Log(ac[i]), Ns.LogAlpha(t), 5e-6);
        }
        Assert.Equal(1000, Ns.TotalN);
        Assert.Equal(999f, Ns.ModelInputTime(1f));
        Assert.Equal(0f, Ns.ModelInputTime(Ns.TimeMin));
        Assert.Equal(499.5f, Ns.ModelInputTime(0.5005f), 2e-3);
    }

    [Theory]
    [InlineData(0.001f)]
    [InlineData(0.0137f)]
    [InlineData(0.3f)]
    [InlineData(0.77f)]
    [InlineData(1f)]
    public void Inverse_lambda_undoes_lambda(float t)
    {
        Assert.Equal(t, Ns.InverseLambda(Ns.Lambda(t)), 2e-4 * Math.Max(t, 0.01));
        Assert.True(Ns.Lambda(t - 0.0005f) > Ns.Lambda(t), "λ decreases with t");
    }

    [Fact]
    public void Time_grids_run_from_T_to_one_over_N_with_their_spacing()
    {
        foreach (var spacing in Enum.GetValues<StepSpacing>())
        {
            var grid = SolverTimesteps.Create(Ns, spacing, 12);
            Assert.Equal(13, grid.Length);
            Assert.Equal(1f, grid[0], 1e-5);
            Assert.Equal(0.001f, grid[^1], 1e-6);
            Assert.True(grid.Zip(grid.Skip(1)).All(p => p.First > p.Second), $"{spacing}: decreasing");
        }
        var uniform = SolverTimesteps.Create(Ns, StepSpacing.TimeUniform, 10);
        Assert.Equal(0.9001f, uniform[1], 1e-6);
        var quadratic = SolverTimesteps.Create(Ns, StepSpacing.TimeQuadratic, 10);
        var roots = quadratic.Select(MathF.Sqrt).ToArray();
        Assert.True(roots.Zip(roots.Skip(1)).Select(p => p.First - p.Second).All(d => Math.Abs(d - (roots[0] - roots[1])) < 1e-5), "uniform in √t");
        var logSnr = SolverTimesteps.Create(Ns, StepSpacing.LogSnr, 10).Select(Ns.Lambda).ToArray();
        var gaps = logSnr.Zip(logSnr.Skip(1)).Select(p => p.Second - p.First).ToArray();
        Assert.True(gaps.All(g => Math.Abs(g - gaps[0]) < 1e-3 * Math.Abs(gaps[0])), "uniform in λ: " + string.Join(", ", gaps));
    }

    [Fact]
    public void Dynamic_thresholding_clips_each_sample_at_its_quantile_and_leaves_small_ones_alone()
    {
        using var scope = NewDisposeScope();
        var small = linspace(-0.9, 0.9, 400).reshape(1, 1, 20, 20);
        var large = (linspace(-3, 3, 400) * 1).reshape(1, 1, 20, 20);
        var x0 = cat(new[] { small, large }, 0);
        var result = DynamicThresholding.Apply(x0);
        Assert.Equal(0f, (result[0] - small[0]).abs().max().item<float>());
        // s = the 0.995-quantile of |x0| (linear interpolation, as torch.quantile), then clamp(x0, −s, s)/s.
        var sorted = large.abs().flatten().sort().Values.data<float>().ToArray();
        double pos = 0.995 * (sorted.Length - 1);
        double s = sorted[(int)pos] + (pos - (int)pos) * (sorted[(int)pos + 1] - sorted[(int)pos]);
        var expected = large.clamp(-s, s) / s;
        Assert.True((result[1] - expected[0]).abs().max().item<float>() < 1e-6);
        Assert.Equal(1f, result[1].abs().max().item<float>(), 1e-6);
    }

    [Fact]
    public void Thresholding_keeps_every_x0_prediction_of_a_pixel_model_in_range()
    {
        var dir = Directory.CreateTempSubdirectory("dit-threshold-").FullName;
        try
        {
            RandomModel.Write(dir, new DiTConfig { InputSize = 8, PatchSize = 4, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = 3 },
                ["a", "b", "c"], std: 0.5);
            using var loaded = LoadedModel.Load(dir);
            var options = new SamplingOptions { Sampler = SamplerKind.DpmPP3M, Steps = 6, CfgScale = 3, Seed = 4, Thresholding = true };
            ImagePipeline.ValidateFor(loaded, options);
            using var run = new SamplingRun(null, loaded.Config, [0, 2], options, loaded.Device);
            using var _ = inference_mode();
            while (!run.Done)
            {
                using var scope = NewDisposeScope();
                var output = Denoiser.Forward(loaded.Model, run.X, run.ModelTimesteps(), run.LabelTensor(), [3.0, 3.0], options.Guidance);
                run.Advance(output, keepPredictedXStart: true);
                Assert.True(run.PredictedXStart!.abs().max().item<float>() <= 1f + 1e-6f);
            }
            Assert.Equal("true", MetadataOf(loaded, options)["thresholding"]);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Thresholding_is_refused_for_a_latent_model()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var e = Assert.Throws<ArgumentException>(() => ImagePipeline.ValidateFor(loaded,
            new SamplingOptions { Sampler = SamplerKind.UniPc, Thresholding = true }));
        Assert.Equal("thresholding", e.ParamName);
    }

    private static Dictionary<string, string> MetadataOf(LoadedModel loaded, SamplingOptions options) =>
        ImagePipeline.Metadata(loaded, [1], 0, options).ToDictionary(kv => kv.Key, kv => kv.Value);
}

/// <summary>The solvers on a model without learned sigma (its whole output is ε) and with every option combination.</summary>
public class SolverOptionCombinationTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public static IEnumerable<object[]> Combinations() =>
        from sampler in new[] { SamplerKind.DpmPP2M, SamplerKind.DpmPP3M, SamplerKind.UniPc }
        from spacing in Enum.GetValues<StepSpacing>()
        select new object[] { sampler, spacing };

    [Theory]
    [MemberData(nameof(Combinations))]
    public void Fixed_variance_model_samples_deterministically_with_every_sampler_and_spacing(SamplerKind sampler, StepSpacing spacing)
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny-fixed"));
        Assert.False(loaded.Config.LearnSigma);
        foreach (var (order, variant) in sampler == SamplerKind.UniPc
                     ? new (int?, UniPcVariant?)[] { (1, UniPcVariant.Bh1), (3, UniPcVariant.Bh2) }
                     : new (int?, UniPcVariant?)[] { (null, null) })
        {
            var options = new SamplingOptions
            {
                Sampler = sampler, Spacing = spacing, Order = order, UniPcVariant = variant, Steps = 4, CfgScale = 2,
                Guidance = GuidanceMode.All, Seed = 12, GuidanceInterval = new GuidanceInterval(0, 600),
            };
            var a = ImagePipeline.Generate(loaded, [4, 6], options);
            var b = ImagePipeline.Generate(loaded, [4, 6], options);
            Assert.Equal(a[1].Png, b[1].Png);
            var text = PngWriterText(a[0].Png);
            Assert.Equal(sampler.Name(), text["sampler"]);
            Assert.Equal(spacing.Name(), text["spacing"]);
        }
    }

    /// <summary>The oracle: these solvers integrate one probability-flow ODE, so with many steps they must reach the
    /// same latents (whatever the order, variant or spacing), while with few steps they must not all coincide (a
    /// solver that ignored its options, or its history, would). Measured on 2026-12-06 (dit-tiny-fixed, labels [4, 6],
    /// cfg 2; largest difference to dpmpp_2m over max|x|): at 40 steps 2.7e-3 (time_uniform), 4.1e-3 (logsnr), 5.9e-3
    /// (time_quadratic); at 4 steps 3.7e-2, 8.5e-2, 1.5e-2. The results are deterministic, so these bounds hold exactly
    /// as long as the solvers do not change.</summary>
    [Theory]
    [InlineData(StepSpacing.TimeUniform)]
    [InlineData(StepSpacing.LogSnr)]
    [InlineData(StepSpacing.TimeQuadratic)]
    public void With_many_steps_every_solver_reaches_the_same_ODE_solution(StepSpacing spacing)
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny-fixed"));
        var solvers = new (string Name, SamplingOptions Options)[]
        {
            ("dpmpp_2m", new() { Sampler = SamplerKind.DpmPP2M }),
            ("dpmpp_3m", new() { Sampler = SamplerKind.DpmPP3M }),
            ("unipc 2 bh2", new() { Sampler = SamplerKind.UniPc, Order = 2, UniPcVariant = UniPcVariant.Bh2 }),
            ("unipc 3 bh1", new() { Sampler = SamplerKind.UniPc, Order = 3, UniPcVariant = UniPcVariant.Bh1 }),
            ("unipc 1 bh2", new() { Sampler = SamplerKind.UniPc, Order = 1, UniPcVariant = UniPcVariant.Bh2 }),
        };
        double Spread(int steps)
        {
            var results = solvers.Select(s => Latents(loaded, [4, 6],
                s.Options with { Spacing = spacing, Steps = steps, CfgScale = 2, Guidance = GuidanceMode.All, Seed = 12 })).ToList();
            foreach (var (r, s) in results.Zip(solvers)) Assert.True(r.All(float.IsFinite), $"{s.Name}, {steps} steps: not finite");
            double scale = results[0].Max(Math.Abs);
            double spread = 0;
            for (int i = 1; i < results.Count; i++)
                spread = Math.Max(spread, results[0].Zip(results[i]).Max(p => Math.Abs(p.First - p.Second)) / scale);
            return spread;
        }
        double many = Spread(40), few = Spread(4);
        output.WriteLine($"{spacing}: spread at 40 steps {many:E2}, at 4 steps {few:E2} (of max|x|)");
        Assert.True(many < 1e-2, $"{spacing}: at 40 steps the solvers disagree by {many:E2} of max|x|");
        Assert.True(few > 2 * many, $"{spacing}: at 4 steps the solvers agree by {few:E2} (40 steps: {many:E2}); options ignored?");
    }

    [Fact]
    public void Options_left_out_equal_their_defaults_written_out_and_each_option_changes_the_result()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny-fixed"));
        // 6 steps: with lower_order_final (the authors' setting) order 3 is used only from the third step to the third
        // from last, so at 4 steps order 3 and order 2 are the same computation.
        var implicitDefaults = new SamplingOptions { Sampler = SamplerKind.UniPc, Steps = 6, CfgScale = 2, Seed = 3 };
        var baseline = Latents(loaded, [1], implicitDefaults);
        Assert.Equal(baseline, Latents(loaded, [1], implicitDefaults with { Order = 2, UniPcVariant = UniPcVariant.Bh2, Spacing = StepSpacing.TimeUniform }));
        foreach (var changed in new[]
                 {
                     implicitDefaults with { Order = 3 }, implicitDefaults with { UniPcVariant = UniPcVariant.Bh1 },
                     implicitDefaults with { Spacing = StepSpacing.LogSnr }, implicitDefaults with { Guidance = GuidanceMode.All },
                     implicitDefaults with { GuidanceInterval = new GuidanceInterval(0, 600) },
                 })
            Assert.False(baseline.SequenceEqual(Latents(loaded, [1], changed)), $"{changed} gives the same latents as {implicitDefaults}");
    }

    /// <summary>The final latents of one run, as the runner's loop makes them.</summary>
    private static float[] Latents(LoadedModel loaded, long[] labels, SamplingOptions options)
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        using var run = new SamplingRun(null, loaded.Config, labels, options, loaded.Device);
        while (!run.Done)
        {
            using var step = NewDisposeScope();
            var scales = Enumerable.Range(0, run.Rows).Select(_ => run.CfgScaleThisStep).ToArray();
            run.Advance(Denoiser.Forward(loaded.Model, run.X, run.ModelTimesteps(), run.LabelTensor(), scales, options.Guidance));
        }
        return run.X.data<float>().ToArray();
    }

    private static IReadOnlyDictionary<string, string> PngWriterText(byte[] png) => Imaging.PngWriter.ReadText(png);
}
