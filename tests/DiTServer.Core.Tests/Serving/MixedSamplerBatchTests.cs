using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using DiTServer.Core.Serving;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Step-level batching with every sampler at once: DPM-Solver++, UniPC, DDPM and DDIM runs with different
/// step counts, spacings, cfg scales and guidance intervals share each forward of <see cref="ModelRunner.Step"/>,
/// and each run's pixels equal the official ones (fixtures) and the ones it gives alone.</summary>
public class MixedSamplerBatchTests
{
    private sealed record Entry(string Name, SamplingOptions Options, long[] Labels, string? FixturePixels);

    private static IEnumerable<Entry> Entries()
    {
        foreach (var row in SolverParityTests.Cases())
        {
            var (model, index) = ((string)row[0], (int)row[1]);
            if (model != "dit-tiny") continue;
            var (options, labels, file, _) = SolverParityTests.Case(model, index);
            yield return new Entry(file, options, labels.Select(l => (long)l).ToArray(), $"{model}/{file}");
        }
        foreach (int k in new[] { 0, 2 }) // DDPM 10 and DDIM 10 of cases.json
        {
            var labels = Fixtures.Load($"dit-tiny/sample-{k}.safetensors")["labels"].data<long>().ToArray();
            yield return new Entry($"sample-{k}", Fixtures.SampleOptions(k), labels, $"dit-tiny/pixels-{k}.safetensors");
        }
        // No fixture for these: guided only inside an interval, so their rows per forward change along the way.
        yield return new Entry("dpmpp_2m interval", new SamplingOptions
        {
            Sampler = SamplerKind.DpmPP2M, Steps = 7, Spacing = StepSpacing.LogSnr, CfgScale = 3, Seed = 17,
            GuidanceInterval = new GuidanceInterval(200, 700),
        }, [4, 6], null);
        yield return new Entry("ddpm interval", new SamplingOptions { Steps = 12, CfgScale = 2.5, Seed = 3, GuidanceInterval = new GuidanceInterval(0, 500) },
            [8], null);
        yield return new Entry("unipc order 1", new SamplingOptions { Sampler = SamplerKind.UniPc, Order = 1, Steps = 4, CfgScale = 1, Seed = 21 }, [2], null);
    }

    [Fact]
    public void Runs_of_every_sampler_batched_together_give_their_pixels_alone()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var runner = new ModelRunner(loaded);
        var entries = Entries().ToList();
        var runs = entries.Select(e => new SamplingRun(null, loaded.Config, e.Labels, e.Options, loaded.Device)).ToList();
        try
        {
            int forwards = 0, maxRunsInStep = 0;
            var rowsSeen = new HashSet<(int Run, int Rows)>();
            while (runs.Any(r => !r.Done))
            {
                var active = runs.Where(r => !r.Done).ToList();
                for (int i = 0; i < runs.Count; i++) if (!runs[i].Done) rowsSeen.Add((i, runs[i].RowsThisStep));
                var failed = runner.Step(active);
                Assert.Empty(failed);
                forwards++;
                maxRunsInStep = Math.Max(maxRunsInStep, active.Count);
            }
            Assert.Equal(entries.Max(e => e.Options.Steps), forwards);
            Assert.Equal(entries.Count, maxRunsInStep);
            // The interval runs really changed their row count: 2n inside the interval, n outside.
            int dpmInterval = entries.FindIndex(e => e.Name == "dpmpp_2m interval");
            Assert.Contains((dpmInterval, 4), rowsSeen);
            Assert.Contains((dpmInterval, 2), rowsSeen);

            var batched = runner.Decode(runs);
            for (int i = 0; i < entries.Count; i++)
            {
                var e = entries[i];
                using var scope = NewDisposeScope();
                // Alone: the sample verb's path, one run, one forward per step.
                var alone = ImagePipeline.Generate(loaded, e.Labels.Select(l => (int)l).ToArray(), e.Options);
                for (int j = 0; j < e.Labels.Length; j++)
                    PipelineParityTests.AssertPixelsClose(alone[j].Hwc, batched[i][j], $"{e.Name} image {j}: batched vs alone");
                if (e.FixturePixels is null) continue;
                var expected = Fixtures.Load(e.FixturePixels)["pixels"];
                for (int j = 0; j < e.Labels.Length; j++)
                    PipelineParityTests.AssertPixelsClose(expected[j].permute(1, 2, 0).contiguous().data<byte>().ToArray(), batched[i][j],
                        $"{e.Name} image {j}: batched vs fixture");
            }
        }
        finally
        {
            foreach (var r in runs) r.Dispose();
        }
    }

    [Fact]
    public void A_guidance_interval_switches_guidance_by_model_timestep()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var options = new SamplingOptions { Sampler = SamplerKind.DpmPP2M, Steps = 10, CfgScale = 4, GuidanceInterval = new GuidanceInterval(300, 600) };
        using var run = new SamplingRun(null, loaded.Config, [1, 2], options, loaded.Device);
        var runner = new ModelRunner(loaded);
        while (!run.Done)
        {
            double t = run.ModelTimestep;
            bool inside = t >= 300 && t <= 600;
            Assert.Equal(inside ? 4.0 : 1.0, run.CfgScaleThisStep);
            Assert.Equal(inside ? 4 : 2, run.RowsThisStep);
            Assert.Empty(runner.Step([run]));
        }
    }

    [Fact]
    public void Each_forward_runs_the_rows_the_scheduler_planned_across_a_guidance_interval_edge()
    {
        // A 2-image guided run outside [0, 500] for its first steps: 2 rows then, 4 rows inside. The scheduler plans each
        // forward's rows without tensors; the runner refuses a run whose rows differ from the plan, so every step running
        // shows the plan was exact, and fair sharing counts the rows that really ran.
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var runner = new ModelRunner(loaded);
        var scheduler = new Scheduler(new ServingOptions());
        var options = new SamplingOptions { Steps = 6, CfgScale = 4, Seed = 1, GuidanceInterval = new GuidanceInterval(0, 500) };
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(new GenerationRequest("r", new GenerationParameters(1, 2, options), TimeSpan.FromHours(1),
            CancellationToken.None)));
        var planned = new List<int>();
        int finished = 0;
        while (true)
        {
            var plan = scheduler.Schedule();
            if (plan.Batch.Count == 0) break;
            planned.Add(plan.BatchRows);
            var outcome = runner.Execute(plan);
            Assert.Empty(outcome.Failed);
            finished += scheduler.Update(plan, outcome).Finished.Count;
        }
        Assert.Equal(1, finished);
        Assert.Equal(0, runner.ActiveRuns); // the finished run's tensors are freed
        Assert.Equal(6, planned.Count);
        Assert.Contains(4, planned);
        Assert.Contains(2, planned);
        Assert.Equal(StepTimesteps.RowsPerStep(options, 2), planned);
    }
}
