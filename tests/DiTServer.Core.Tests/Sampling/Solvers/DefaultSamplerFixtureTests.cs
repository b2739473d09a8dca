using DiTServer.Core.Pipeline;
using System.Globalization;
using System.Text.Json;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using DiTServer.Core.Serving;
using DiTServer.Core.Model;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The exact default a request gets when it names no sampler (UniPC, order 2, bh2, time-uniform, 5 steps,
/// cfg 4, official guidance) against the UniPC authors' own code: tests/fixtures/unipc-default.safetensors, made by
/// tools/fixtures/make_unipc_default.py with the "solver-K" recipe of ../shared/fixtures/README.md. Alone, and as one
/// run in a batch with other samplers, at the fixtures' tolerance (max|out − ref| ≤ 1e-4·max|ref|).</summary>
public class DefaultSamplerFixtureTests
{
    private static readonly string FixtureFile = Path.Combine(AppContext.BaseDirectory, "fixtures", "unipc-default.safetensors");

    /// <summary>Our defaults, spelt only through the defaults: a change of the default sampler or steps fails here.</summary>
    private static SamplingOptions DefaultOptions(long seed) =>
        new() { Sampler = SamplerDefaults.Sampler, Steps = SamplerDefaults.Steps(SamplerDefaults.Sampler), Seed = seed };

    private static (Dictionary<string, string> Meta, Dictionary<string, Tensor> Tensors) Fixture() =>
        (SafetensorsMetadata.Read(FixtureFile), Safetensors.LoadStateDict(FixtureFile));

    private static long[] Labels(Dictionary<string, string> meta) => JsonSerializer.Deserialize<long[]>(meta["labels"])!;

    [Fact]
    public void The_fixture_is_the_servers_default_setting()
    {
        var (meta, _) = Fixture();
        var options = DefaultOptions(long.Parse(meta["seed"], CultureInfo.InvariantCulture));
        Assert.Equal("dit-tiny", meta["model"]);
        Assert.Equal(options.Sampler.Name(), meta["solver"]);
        Assert.Equal(options.Steps, int.Parse(meta["steps"], CultureInfo.InvariantCulture));
        Assert.Equal(options.EffectiveOrder, int.Parse(meta["order"], CultureInfo.InvariantCulture));
        Assert.Equal(options.EffectiveUniPcVariant.Name(), meta["variant"]);
        Assert.Equal(options.EffectiveSpacing.Name(), meta["spacing"]);
        Assert.Equal(options.CfgScale, double.Parse(meta["cfg_scale"], CultureInfo.InvariantCulture));
        Assert.Equal(GuidanceMode.Official, options.Guidance);
        Assert.Equal("official", meta["guidance"]);
        Assert.Null(options.GuidanceInterval);
        // UniPC, order 2, bh2, time-uniform, 5 steps: if a default moves, regenerate the fixture for the new one.
        Assert.Equal((SamplerKind.UniPc, 5, 2, UniPcVariant.Bh2, StepSpacing.TimeUniform),
            (options.Sampler, options.Steps, options.EffectiveOrder, options.EffectiveUniPcVariant, options.EffectiveSpacing));
    }

    [Fact]
    public void Alone_the_default_matches_the_authors_code_step_by_step()
    {
        var (meta, f) = Fixture();
        var labels = Labels(meta);
        var options = DefaultOptions(long.Parse(meta["seed"], CultureInfo.InvariantCulture));
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        Assert.Equal(labels, f["labels"].data<long>().ToArray());

        var trajectory = new Tensor?[options.Steps];
        var modelT = new List<float>();
        using var run = new SamplingRun(null, loaded.Config, labels, options, loaded.Device);
        run.OnStepFinished = (step, x) => trajectory[step - 1] = x.clone().DetachFromDisposeScope();
        SolverParityTests.AssertRelativeMax(f["initial_noise"], run.X, "initial noise");
        while (!run.Done)
        {
            using var stepScope = NewDisposeScope();
            modelT.Add((float)run.ModelTimestep);
            var scales = Enumerable.Repeat(run.CfgScaleThisStep, run.Rows).ToArray();
            run.Advance(Denoiser.Forward(loaded.Model, run.X, run.ModelTimesteps(), run.LabelTensor(), scales, options.Guidance));
        }
        Assert.Equal(int.Parse(meta["model_calls"], CultureInfo.InvariantCulture), modelT.Count);
        SolverParityTests.AssertRelativeMax(f["model_t"], tensor(modelT.ToArray()), "model_t");
        for (int s = 0; s < options.Steps; s++)
        {
            Assert.True(trajectory[s] is not null, $"step {s + 1} never finished");
            SolverParityTests.AssertRelativeMax(f["trajectory"][s], trajectory[s]!, $"trajectory step {s + 1}");
        }
        SolverParityTests.AssertRelativeMax(f["samples"], run.X, "samples");
    }

    [Fact]
    public void In_a_mixed_batch_the_default_matches_the_authors_code()
    {
        var (meta, f) = Fixture();
        var options = DefaultOptions(long.Parse(meta["seed"], CultureInfo.InvariantCulture));
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var runner = new ModelRunner(loaded);
        // Batch mates that change every forward's rows: a longer DDPM run, an unguided UniPC bh1 order 3 run, and a
        // DPM++ run guided only inside an interval (its rows change along the way).
        var runs = new List<SamplingRun>
        {
            new(null, loaded.Config, [5, 1, 0], new SamplingOptions { Steps = 8, CfgScale = 2, Seed = 4 }, loaded.Device),
            new(null, loaded.Config, Labels(meta), options, loaded.Device),
            new(null, loaded.Config, [9], new SamplingOptions { Sampler = SamplerKind.UniPc, Order = 3, UniPcVariant = UniPcVariant.Bh1,
                Steps = 6, CfgScale = 1, Seed = 2026 }, loaded.Device),
            new(null, loaded.Config, [2, 2], new SamplingOptions { Sampler = SamplerKind.DpmPP2M, Steps = 4, CfgScale = 3, Seed = 8,
                GuidanceInterval = new GuidanceInterval(300, 800) }, loaded.Device),
        };
        var defaultRun = runs[1];
        var trajectory = new Tensor?[options.Steps];
        defaultRun.OnStepFinished = (step, x) => trajectory[step - 1] = x.clone().DetachFromDisposeScope();
        try
        {
            int shared = 0;
            while (runs.Any(r => !r.Done))
            {
                var active = runs.Where(r => !r.Done).ToList();
                if (active.Contains(defaultRun) && active.Count > 1) shared++;
                Assert.Empty(runner.Step(active));
            }
            Assert.Equal(options.Steps, shared); // every step of the default run shared its forward
            for (int s = 0; s < options.Steps; s++)
                SolverParityTests.AssertRelativeMax(f["trajectory"][s], trajectory[s]!, $"batched trajectory step {s + 1}");
            SolverParityTests.AssertRelativeMax(f["samples"], defaultRun.X, "batched samples");
        }
        finally
        {
            foreach (var r in runs) r.Dispose();
            foreach (var t in trajectory) t?.Dispose();
        }
    }
}
