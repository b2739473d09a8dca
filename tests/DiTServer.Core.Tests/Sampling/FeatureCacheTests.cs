using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using DiTServer.Core.Serving;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Feature caching inside step batching (cache_interval, cache_mode): a run's rows skip the DiT's blocks on
/// its cached steps, share the final layer's batch with everyone else's, and give the same bytes alone and batched.</summary>
public class FeatureCacheTests
{
    private static LoadedModel Tiny() => LoadedModel.Load(Fixtures.PathOf("dit-tiny"));

    private static byte[][] Alone(LoadedModel loaded, long[] labels, SamplingOptions options) =>
        ImagePipeline.Generate(loaded, labels.Select(l => (int)l).ToArray(), options).Select(i => i.Hwc).ToArray();

    [Fact]
    public void Cache_interval_1_runs_the_blocks_every_step_and_gives_todays_bytes()
    {
        using var loaded = Tiny();
        var options = new SamplingOptions { Steps = 6, CfgScale = 4, Seed = 5 };
        long before = loaded.Model.BlockRowsForwarded;
        var today = Alone(loaded, [1, 2], options);
        Assert.Equal(6 * 4, loaded.Model.BlockRowsForwarded - before); // 2 images, guided: 4 rows, every step
        var explicitOne = Alone(loaded, [1, 2], options with { CacheInterval = 1, CacheMode = CacheMode.Taylor });
        for (int i = 0; i < 2; i++) Assert.Equal(today[i], explicitOne[i]);
    }

    [Theory]
    [InlineData(CacheMode.Reuse, 4, 6)]  // full at steps 0, 3, 6, 9
    [InlineData(CacheMode.Taylor, 5, 5)] // also step 1: taylor needs two full steps
    public void Cached_steps_leave_the_blocks(CacheMode mode, int full, int cached)
    {
        using var loaded = Tiny();
        var runner = new ModelRunner(loaded);
        var options = new SamplingOptions { Steps = 10, CfgScale = 4, Seed = 2, CacheInterval = 3, CacheMode = mode };
        using var run = runner.Start(new GenerationParameters(3, 2, options));
        long before = loaded.Model.BlockRowsForwarded;
        while (!run.Done) Assert.Empty(runner.Step([run]));
        Assert.Equal(full * 4L, loaded.Model.BlockRowsForwarded - before); // 4 rows (2 images, cond + uncond) per full step
        Assert.Equal((full, cached), (runner.FullSteps, runner.CachedSteps));
        Assert.True(run.Cache.Bytes > 0);
        // And caching changed the image: the cached steps used something else than the blocks' output.
        var uncached = Alone(loaded, [3, 3], options with { CacheInterval = 1 });
        var cachedPixels = runner.Decode([run])[0];
        Assert.NotEqual(uncached[0], cachedPixels[0]);
    }

    [Theory]
    [InlineData(CacheMode.Reuse)]
    [InlineData(CacheMode.Taylor)]
    public void A_cached_run_gives_the_same_bytes_alone_and_in_a_mixed_batch(CacheMode mode)
    {
        using var loaded = Tiny();
        var runner = new ModelRunner(loaded);
        // The run under test (interval 3) and batch mates: uncached DDIM, a cached UniPC run with another interval whose
        // rows change at a guidance interval's edge, and a cached DDPM run that joins two steps later, so most forwards
        // hold full and cached rows at once.
        var entries = new (long[] Labels, SamplingOptions Options, int JoinsAt)[]
        {
            ([1, 2], new SamplingOptions { Steps = 10, CfgScale = 4, Seed = 7, CacheInterval = 3, CacheMode = mode }, 0),
            ([5], new SamplingOptions { Sampler = SamplerKind.Ddim, Steps = 8, CfgScale = 3, Seed = 4 }, 0),
            ([0, 6], new SamplingOptions { Sampler = SamplerKind.UniPc, Steps = 9, CfgScale = 2.5, Seed = 9, CacheInterval = 2,
                CacheMode = CacheMode.Taylor, GuidanceInterval = new GuidanceInterval(0, 500) }, 0),
            ([8], new SamplingOptions { Steps = 7, CfgScale = 1, Seed = 3, CacheInterval = 4 }, 2),
        };
        var runs = new List<SamplingRun?> { null, null, null, null };
        try
        {
            int step = 0, mixed = 0;
            while (step == 0 || runs.Any(r => r is { Done: false }))
            {
                for (int i = 0; i < entries.Length; i++)
                    if (runs[i] is null && entries[i].JoinsAt == step)
                        runs[i] = new SamplingRun(null, loaded.Config, entries[i].Labels, entries[i].Options, loaded.Device);
                var active = runs.Where(r => r is { Done: false }).Select(r => r!).ToList();
                long full = runner.FullSteps, cached = runner.CachedSteps;
                Assert.Empty(runner.Step(active));
                if (runner.FullSteps > full && runner.CachedSteps > cached) mixed++;
                step++;
            }
            Assert.True(mixed >= 3, $"only {mixed} forwards mixed full and cached rows");
            for (int i = 0; i < entries.Length; i++)
            {
                var batched = runner.Decode([runs[i]!])[0];
                var alone = Alone(loaded, entries[i].Labels, entries[i].Options);
                for (int j = 0; j < alone.Length; j++) Assert.True(alone[j].SequenceEqual(batched[j]), $"entry {i} image {j}: batched differs from alone");
            }
        }
        finally
        {
            foreach (var run in runs) run?.Dispose();
        }
    }

    [Fact]
    public void The_cache_is_freed_with_the_run()
    {
        using var loaded = Tiny();
        var runner = new ModelRunner(loaded);
        var scheduler = new Scheduler(new ServingOptions());
        var options = new SamplingOptions { Steps = 7, CfgScale = 4, Seed = 1, CacheInterval = 2, CacheMode = CacheMode.Taylor };
        long liveBefore = ModelRunner.LiveTensorsOnThisThread;
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(new GenerationRequest("r", new GenerationParameters(1, 2, options),
            TimeSpan.FromHours(1), CancellationToken.None)));
        long maxCacheBytes = 0;
        int finished = 0;
        while (true)
        {
            var plan = scheduler.Schedule();
            if (plan.Batch.Count == 0) break;
            var outcome = runner.Execute(plan);
            Assert.Empty(outcome.Failed);
            Assert.Equal(plan.Batch.Count, outcome.FullSteps + outcome.CachedSteps);
            maxCacheBytes = Math.Max(maxCacheBytes, runner.FeatureCacheBytes);
            finished += scheduler.Update(plan, outcome).Finished.Count;
        }
        Assert.Equal(1, finished);
        // Taylor keeps two (4 rows, T, D) float32 hidden states while the run lives, none after it; admission's estimate
        // (GenerationParameters.CacheBytes) is exactly that.
        Assert.Equal(2L * 4 * loaded.Config.NumPatches * loaded.Config.HiddenSize * 4, maxCacheBytes);
        Assert.Equal(maxCacheBytes, new GenerationParameters(1, 2, options).CacheBytes(FeatureCache.RowBytes(loaded.Config)));
        Assert.Equal(0, runner.ActiveRuns);
        Assert.Equal(0, runner.FeatureCacheBytes);
        Assert.Equal(liveBefore, ModelRunner.LiveTensorsOnThisThread);
    }

    [Fact]
    public void Bad_cache_settings_are_refused_with_their_wire_names()
    {
        Assert.Equal("cache_interval", Assert.ThrowsAny<ArgumentException>(() => new SamplingOptions { CacheInterval = 0 }.Validate()).ParamName);
        Assert.Equal("cache_interval", Assert.ThrowsAny<ArgumentException>(() => new SamplingOptions { CacheInterval = 1001 }.Validate()).ParamName);
        Assert.Equal("cache_mode", Assert.ThrowsAny<ArgumentException>(() => new SamplingOptions { CacheMode = (CacheMode)7 }.Validate()).ParamName);
    }
}
