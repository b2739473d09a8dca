using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using DiTServer.Core.Serving;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Image to image (<see cref="ImageEdit"/>): a run starts from its image noised to where its strength leaves
/// the schedule and runs only the steps from there (SDEdit); with a mask it keeps the black region (RePaint) and gives
/// the kept pixels back exactly.</summary>
public class ImageEditTests
{
    /// <summary>A demo-model image to edit: a sample of class <paramref name="label"/> (28×28 grayscale HWC bytes).</summary>
    private static byte[] Drawn(LoadedModel demo, int label, long seed) =>
        ImagePipeline.Generate(demo, [label], new SamplingOptions { Sampler = SamplerKind.DpmPP2M, Steps = 10, CfgScale = 4, Seed = seed })[0].Hwc;

    /// <summary>Mean absolute difference in 8-bit levels.</summary>
    private static double MeanAbs(byte[] a, byte[] b) => a.Zip(b, (x, y) => Math.Abs(x - y)).Average();

    /// <summary>Left half kept (black), right half redrawn (white).</summary>
    private static byte[] RightHalf(int size) =>
        Enumerable.Range(0, size * size).Select(i => i % size >= size / 2 ? (byte)255 : (byte)0).ToArray();

    [Theory]
    [InlineData(50, 0.75, 38)]
    [InlineData(10, 0.3, 3)]   // 0.3·10 is 3.0000000000000004 in doubles: still 3 steps
    [InlineData(10, 0.31, 4)]
    [InlineData(50, 0.001, 1)] // at least one step
    [InlineData(7, 1.0, 7)]
    public void A_run_makes_ceil_strength_times_steps_model_calls(int steps, double strength, int expected)
    {
        Assert.Equal(expected, ImageEdit.StepsRun(steps, strength));
        var edit = new ImageEdit(new byte[16 * 16 * 3], 16, 3, strength);
        var p = new GenerationParameters(1, 2, new SamplingOptions { Steps = steps, CfgScale = 4 }, edit);
        Assert.Equal(expected, p.StepsRun);
        Assert.Equal(2 * 2 * expected, p.Cost); // admission counts only the steps run
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.5)]
    [InlineData(1.0001)]
    [InlineData(double.NaN)]
    public void A_strength_outside_0_to_1_is_refused_by_name(double strength)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => new ImageEdit(new byte[4], 2, 1, strength));
        Assert.Equal("strength", e.ParamName);
    }

    [Theory]
    [InlineData("ddpm")]
    [InlineData("ddim")]
    [InlineData("dpmpp_2m")]
    [InlineData("dpmpp_3m")]
    [InlineData("unipc")]
    public void Strength_runs_the_last_steps_of_the_schedule_and_fewer_of_them(string sampler)
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var runner = new ModelRunner(loaded);
        var options = new SamplingOptions { Sampler = SamplerNames.Samplers[sampler], Steps = 10, CfgScale = 4, Seed = 3 };
        var full = StepTimesteps.For(options);
        var edit = new ImageEdit(new byte[loaded.ImageSize * loaded.ImageSize * 3], loaded.ImageSize, 3, 0.4);
        using var run = runner.Start(new GenerationParameters(2, 1, options, edit));
        var seen = new List<double>();
        while (!run.Done)
        {
            seen.Add(run.ModelTimestep);
            Assert.Empty(runner.Step([run]));
        }
        Assert.Equal(4, seen.Count);
        Assert.Equal(4, run.TotalSteps);
        // The same last four timesteps as the full run's (the solvers' grid from t_start equals the full grid's tail up
        // to float32 rounding), and what the scheduler plans without tensors.
        Assert.Equal(StepTimesteps.For(options, 0.4), seen);
        for (int k = 0; k < 4; k++) Assert.Equal(full[6 + k], seen[k], 0.05);
    }

    [Theory]
    [InlineData(StepSpacing.TimeUniform)]
    [InlineData(StepSpacing.LogSnr)]
    [InlineData(StepSpacing.TimeQuadratic)]
    public void The_solvers_t_start_grid_is_the_full_grids_tail(StepSpacing spacing)
    {
        var schedule = DiscreteVpSchedule.Linear1000;
        var full = SolverTimesteps.Create(schedule, spacing, 20);
        foreach (int run in new[] { 1, 7, 15, 20 })
        {
            var tail = SolverTimesteps.Create(schedule, spacing, run, SolverTimesteps.StartTime(schedule, spacing, 20, run));
            Assert.Equal(run + 1, tail.Length);
            for (int k = 0; k <= run; k++) Assert.Equal(full[20 - run + k], tail[k], 1e-5f);
        }
    }

    [Fact]
    public void A_small_strength_stays_close_to_the_image_and_strength_1_redraws_it()
    {
        using var demo = LoadedModel.Load(DemoModel.Path);
        var input = Drawn(demo, 7, seed: 11); // a sneaker
        var options = new SamplingOptions { Sampler = SamplerKind.DpmPP2M, Steps = 20, CfgScale = 4, Seed = 5 };
        double Distance(double s, int label) =>
            MeanAbs(input, ImagePipeline.Generate(demo, [label], options, edit: new ImageEdit(input, 28, 1, s))[0].Hwc);
        double low = Distance(0.1, 7), lowOtherClass = Distance(0.1, 1), sameClassRedrawn = Distance(1.0, 7), highOtherClass = Distance(1.0, 1);
        string all = $"mean |Δ| in levels: s=0.1 {low:F2}, s=0.1 to trousers {lowOtherClass:F2}, s=1 {sameClassRedrawn:F2}, " +
            $"s=1 to trousers {highOtherClass:F2}";
        Assert.True(low < 8 && lowOtherClass < 10, all);                 // a small strength keeps the picture, whatever the class asked
        Assert.True(sameClassRedrawn > 2 * low, all);                    // strength 1 draws another sneaker
        Assert.True(highOtherClass > 4 * lowOtherClass, all);            // and is free to draw the class asked for
    }

    [Theory]
    [InlineData("dpmpp_2m")]
    [InlineData("unipc")]
    [InlineData("ddpm")]
    public void Masked_pixels_come_back_exactly_and_the_redrawn_half_changes(string sampler)
    {
        using var demo = LoadedModel.Load(DemoModel.Path);
        var input = Drawn(demo, 0, seed: 2);
        var mask = RightHalf(28);
        var options = new SamplingOptions { Sampler = SamplerNames.Samplers[sampler], Steps = 12, CfgScale = 4, Seed = 9 };
        var edit = new ImageEdit(input, 28, 1, 1.0, mask);
        var output = ImagePipeline.Generate(demo, [8, 8], options, edit: edit);
        foreach (var image in output)
        {
            var kept = Enumerable.Range(0, 28 * 28).Where(i => mask[i] == 0).ToArray();
            Assert.All(kept, i => Assert.Equal(input[i], image.Hwc[i]));
            Assert.True(Enumerable.Range(0, 28 * 28).Count(i => mask[i] == 255 && image.Hwc[i] != input[i]) > 50, "the redrawn half changed");
        }
    }

    [Fact]
    public void The_known_region_is_replaced_during_sampling_not_only_pasted_at_the_end()
    {
        // In a pixel-space model the run's own x keeps the image's values where the mask keeps them: the last step
        // replaces the known region with x₀ itself, each earlier one with x₀ noised to its time.
        using var demo = LoadedModel.Load(DemoModel.Path);
        var input = Drawn(demo, 3, seed: 4);
        var edit = new ImageEdit(input, 28, 1, 0.8, RightHalf(28));
        var runner = new ModelRunner(demo);
        using var run = runner.Start(new GenerationParameters(3, 1, new SamplingOptions { Sampler = SamplerKind.Ddim, Steps = 8, Seed = 1 }, edit));
        while (!run.Done) Assert.Empty(runner.Step([run]));
        using var x0 = tensor(edit.ModelPixels(), new long[] { 1, 1, 28, 28 });
        using var left = run.X[.., .., .., ..14];
        using var expected = x0[.., .., .., ..14];
        Assert.True(left.equal(expected).all().item<bool>(), "the kept half of x is the image itself after the last step");
    }

    [Fact]
    public void Kept_pixels_also_come_back_exactly_through_a_VAE()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny")); // latent model: 16×16 RGB through vae-tiny
        int size = loaded.ImageSize;
        var rng = new Random(1);
        var input = new byte[size * size * 3];
        rng.NextBytes(input);
        var mask = RightHalf(size);
        var edit = new ImageEdit(input, size, 3, 0.9, mask);
        var image = ImagePipeline.Generate(loaded, [4], new SamplingOptions { Steps = 5, CfgScale = 4, Seed = 2 }, edit: edit)[0];
        for (int i = 0; i < size * size; i++)
            if (mask[i] == 0) Assert.Equal(input.AsSpan(i * 3, 3).ToArray(), image.Hwc.AsSpan(i * 3, 3).ToArray());
        var meta = Imaging.PngWriter.ReadText(image.Png);
        Assert.Equal("0.9", meta["strength"]);
        Assert.Equal($"{size * size / 2} of {size * size} pixels redrawn", meta["mask"]);
        Assert.Contains("Denoising strength: 0.9", meta["parameters"]);
        Assert.Contains($"Mask: {size * size / 2} of {size * size} pixels redrawn", meta["parameters"]);
        Assert.Contains("Steps: 5", meta["parameters"]);
    }
}
