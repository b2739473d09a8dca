using DiTServer.Core.Pipeline;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using DiTServer.Core.Vae;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Bench;

/// <summary><c>bench cache</c>: images/s of whole generations with feature caching (cache_interval × cache_mode) per
/// sampler, against the same sampler uncached, in one run on one model.</summary>
/// <remarks>Each point is the median of <c>--iters</c> generations of one request of <c>--batch</c> images (2·batch
/// rows with guidance), through the same batch forward as the server (<see cref="BatchForward"/>), plus the decode.
/// The uncached point of each sampler is measured first, so each row's speed-up is against a number of the same run.</remarks>
public static class CacheBenchmark
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new BenchModelOptions();
        var samplers = ListOption.Create("--samplers", "Samplers to measure", "ddpm,ddim", s =>
            SamplerNames.Samplers.TryGetValue(s, out var k) ? k : throw new UsageException($"unknown sampler '{s}'"));
        var steps = new Option<int>("--steps") { Description = "Steps per generation", DefaultValueFactory = _ => 50 };
        var intervals = ListOption.Create("--intervals", "cache_interval values (1 = uncached, always measured)", "2,3,4,5", s =>
            int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var k) && k >= 1 ? k
                : throw new UsageException($"--intervals takes integers ≥ 1, not '{s}'"));
        var modes = ListOption.Create("--modes", "cache_mode values", "reuse,taylor", s =>
            SamplerNames.CacheModes.TryGetValue(s, out var m) ? m : throw new UsageException($"unknown cache mode '{s}'; use reuse or taylor"));
        var batch = new Option<int>("--batch") { Description = "Images per generation", DefaultValueFactory = _ => 8 };
        var cfg = new Option<double>("--cfg") { DefaultValueFactory = _ => 4.0 };
        var iters = new Option<int>("--iters") { Description = "Timed generations per point (median reported)", DefaultValueFactory = _ => 3 };
        var threads = new Option<int?>("--threads");

        var command = new Command("cache", "Images/s with feature caching (cache_interval × cache_mode) per sampler vs uncached")
        {
            samplers, steps, intervals, modes, batch, cfg, iters, threads,
        };
        model.AddTo(command);
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            using var loaded = model.Load(parse);
            int n = Math.Max(1, parse.GetValue(batch)), nIter = Math.Max(1, parse.GetValue(iters));
            var labels = Enumerable.Range(0, n).Select(i => (long)(i % loaded.Config.NumClasses)).ToArray();
            stdout.WriteLine($"# bench cache: {loaded.Name}, batch {n}, {parse.GetValue(steps)} steps, cfg " +
                $"{parse.GetValue(cfg).ToString(CultureInfo.InvariantCulture)}, {iters.Name} {nIter} (median), device " +
                $"{GenerateBenchmark.DeviceName(loaded.Device)}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
            stdout.WriteLine("sampler\tcache_interval\tcache_mode\tseconds\timages_per_s\tspeedup\tfull_steps");
            foreach (var sampler in parse.GetValue(samplers)!)
            {
                var baseOptions = new SamplingOptions { Sampler = sampler, Steps = parse.GetValue(steps), CfgScale = parse.GetValue(cfg), Seed = 0 };
                Check(baseOptions);
                Generate(loaded, labels, baseOptions with { Steps = 2 }); // warm-up at this shape
                var (uncached, uncachedFull) = Median(loaded, labels, baseOptions, nIter);
                Row(sampler, 1, "-", uncached, uncached, uncachedFull);
                foreach (int interval in parse.GetValue(intervals)!.Where(k => k > 1))
                    foreach (var mode in parse.GetValue(modes)!)
                    {
                        var options = baseOptions with { CacheInterval = interval, CacheMode = mode };
                        Check(options);
                        // On a shared machine the load drifts: each point times the uncached generation again, alternating
                        // with its own (uncached, cached, uncached, …), and its speed-up is against that.
                        var baseline = new List<double>();
                        var cached = new List<double>();
                        long cachedBlockRows = 0;
                        for (int i = 0; i < nIter; i++)
                        {
                            baseline.Add(Generate(loaded, labels, baseOptions));
                            long start = loaded.Model.BlockRowsForwarded;
                            cached.Add(Generate(loaded, labels, options));
                            cachedBlockRows += loaded.Model.BlockRowsForwarded - start;
                        }
                        // Steps of one generation whose rows went through the blocks, counted by the model itself.
                        int full = (int)(cachedBlockRows / nIter / RowsPerStep(labels, options));
                        Row(sampler, interval, mode.Name(), MedianOf(cached), MedianOf(baseline), full);
                    }
            }
            return CommandLine.ExitOk;

            void Row(SamplerKind sampler, int interval, string mode, double seconds, double uncached, int full)
            {
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{sampler.Name()}\t{interval}\t{mode}\t{seconds:F2}\t{n / seconds:F2}\t{uncached / seconds:F2}\t{full}"));
                stdout.Flush();
            }
        }));
        return command;
    }

    private static void Check(SamplingOptions options)
    {
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    /// <returns>The median seconds, and the steps of one generation whose rows went through the blocks (counted by
    /// the model itself: <see cref="Core.Model.DiT.BlockRowsForwarded"/>).</returns>
    private static (double Seconds, int FullSteps) Median(LoadedModel model, long[] labels, SamplingOptions options, int iters)
    {
        long before = model.Model.BlockRowsForwarded;
        var times = Enumerable.Range(0, iters).Select(_ => Generate(model, labels, options)).ToList();
        return (MedianOf(times), (int)((model.Model.BlockRowsForwarded - before) / iters / RowsPerStep(labels, options)));
    }

    private static long RowsPerStep(long[] labels, SamplingOptions options) => labels.Length * (options.CfgScale != 1 ? 2L : 1L);

    private static double MedianOf(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }

    /// <returns>seconds for sampling and decoding one request.</returns>
    private static double Generate(LoadedModel model, long[] labels, SamplingOptions options)
    {
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var clock = Stopwatch.StartNew();
        var latents = LatentSampler.Sample(model.Model, labels, options, model.Device);
        if (model.Device.type == DeviceType.CUDA) cuda.synchronize();
        using var pixels = LatentDecoder.DecodeToPixels(model, latents); // on the host: waits for the device
        return clock.Elapsed.TotalSeconds;
    }
}
