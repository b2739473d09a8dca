using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Diffusion;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Sampler arithmetic at its edges (issue 19): DDIM with eta → 1 and few steps used to take the sqrt of a
/// float32 difference that rounds below 0 (NaN for every request); now every sampler gives finite images over the
/// grid of settings the API accepts, and a run that still turns non-finite fails alone with its settings named.</summary>
public class NonFiniteSamplingTests
{
    [Theory]
    [InlineData(2, 1.0)]
    [InlineData(2, 0.99999999)]
    [InlineData(3, 1.0)]
    public void Ddim_with_eta_near_one_and_few_steps_stays_finite_at_every_step(int steps, double eta)
    {
        using var scope = NewDisposeScope();
        var diffusion = GaussianDiffusion.Create(steps.ToString(), learnSigma: true);
        var x = randn(1, 4, 8, 8, generator: new TorchSharp.torch.Generator(1));
        var output = zeros(1, 8, 8, 8);
        for (int index = steps - 1; index >= 0; index--)
        {
            var t = full(1, (long)index, dtype: int64);
            x = diffusion.DdimSample(output, x, t, eta, randn(1, 4, 8, 8, generator: new TorchSharp.torch.Generator(2))).Sample;
            Assert.True(isfinite(x).all().item<bool>(), $"DDIM eta {eta}, {steps} steps: non-finite after respaced index {index}");
        }
    }

    public static IEnumerable<object[]> Grid()
    {
        foreach (var (sampler, _) in SamplerNames.Samplers)
            foreach (double eta in new[] { 0, 0.5, 1, 0.99999999 })
                foreach (int steps in new[] { 1, 2, 3 })
                    foreach (double cfg in new[] { 1.0, 4.0 })
                    {
                        var kind = SamplerNames.Samplers[sampler];
                        if (eta > 0 && kind != SamplerKind.Ddim) continue; // eta is DDIM's only
                        if (steps < new SamplingOptions { Sampler = kind }.EffectiveOrder) continue; // refused at the door
                        yield return [sampler, eta, steps, cfg];
                    }
    }

    [Fact]
    public void Every_sampler_eta_steps_and_cfg_of_the_grid_gives_finite_images_on_the_tiny_model()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var failures = new List<string>();
        int cases = 0;
        foreach (var row in Grid())
        {
            var (sampler, eta, steps, cfg) = ((string)row[0], (double)row[1], (int)row[2], (double)row[3]);
            var options = new SamplingOptions { Sampler = SamplerNames.Samplers[sampler], Eta = eta, Steps = steps, CfgScale = cfg, Seed = 7 };
            using var scope = NewDisposeScope();
            try
            {
                var latents = LatentSampler.Sample(loaded.Model, [1, 3], options, loaded.Device);
                if (!isfinite(latents).all().item<bool>()) failures.Add($"{NonFiniteSampleException.Describe(options)}: non-finite latents");
                var images = ImagePipeline.Generate(loaded, [1, 3], options);
                if (images.Count != 2 || images.Any(i => i.Png.Length == 0)) failures.Add($"{NonFiniteSampleException.Describe(options)}: no images");
            }
            catch (NonFiniteSampleException e) { failures.Add(e.Message); }
            cases++;
        }
        Assert.True(cases >= 40, $"only {cases} cases in the grid");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>The solvers divide by the step in log-SNR (h = λ_next − λ_now): every step count the API accepts must give
    /// strictly decreasing times with distinct, finite λ, on every spacing, or a 1000-step request would turn NaN late.</summary>
    [Fact]
    public void Solver_time_grids_are_strictly_decreasing_with_distinct_finite_lambdas_for_every_accepted_step_count()
    {
        var schedule = Sampling.Solvers.DiscreteVpSchedule.Linear1000;
        var bad = new List<string>();
        foreach (var (name, spacing) in SamplerNames.Spacings)
            for (int steps = 1; steps <= 1000; steps++)
            {
                var times = Sampling.Solvers.SolverTimesteps.Create(schedule, spacing, steps);
                for (int i = 1; i < times.Length && bad.Count < 20; i++)
                {
                    float lambdaPrev = schedule.Lambda(times[i - 1]), lambda = schedule.Lambda(times[i]);
                    if (!(times[i] < times[i - 1]) || !float.IsFinite(lambda) || !(lambda > lambdaPrev))
                        bad.Add($"{name}, {steps} steps: t[{i - 1}] = {times[i - 1]:R}, t[{i}] = {times[i]:R}, λ {lambdaPrev:R} → {lambda:R}");
                }
            }
        Assert.True(bad.Count == 0, string.Join("\n", bad));
    }

    /// <summary>Poisons one run's model output with NaN (as a broken model or an overflow would).</summary>
    private sealed class PoisonSeed(long seed) : IRunnerFaultInjector
    {
        public void OnForward(SamplingRun run, Tensor output)
        {
            if (run.Options.Seed == seed && run.StepsDone >= 1) output.fill_(double.NaN);
        }
    }

    [Fact]
    public void A_run_that_turns_non_finite_fails_alone_with_its_settings_named_and_its_batch_mates_finish()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var runner = new ModelRunner(loaded, new PoisonSeed(13));
        var bad = new SamplingOptions { Sampler = SamplerKind.Ddim, Eta = 1, Steps = 3, CfgScale = 4, Seed = 13 };
        var good = new[]
        {
            new SamplingOptions { Sampler = SamplerKind.Ddim, Eta = 1, Steps = 3, CfgScale = 4, Seed = 12 },
            new SamplingOptions { Sampler = SamplerKind.DpmPP2M, Steps = 3, CfgScale = 1, Seed = 14 },
        };
        var runs = new[] { bad }.Concat(good).Select(o => runner.Start(new GenerationParameters(1, 1, o))).ToList();
        try
        {
            var failed = new List<(SamplingRun Run, Exception Error)>();
            while (runs.Except(failed.Select(f => f.Run)).Any(r => !r.Done))
                failed.AddRange(runner.Step(runs.Except(failed.Select(f => f.Run)).Where(r => !r.Done).ToList()));
            var (run, error) = Assert.Single(failed);
            Assert.Same(runs[0], run);
            var nonFinite = Assert.IsType<NonFiniteSampleException>(error);
            Assert.Equal(2, nonFinite.Step);
            Assert.Contains("steps 3, sampler ddim, cfg_scale 4, guidance official, eta 1, seed 13", nonFinite.Message);
            // Its batch mates' latents are finite and decode.
            Assert.All(runner.DecodeEach(runs.Skip(1).ToList()), d => Assert.Null(d.Error));
        }
        finally
        {
            foreach (var r in runs) r.Dispose();
        }
    }
}
