using DiTServer.Core.Pipeline;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Logging.Abstractions;

namespace DiTServer.Bench;

/// <summary><c>bench serve</c>: the serving engine in-process (no HTTP) against the raw single-request sampler loop,
/// and a mixed short/long workload under step-level vs request-level batching.</summary>
public static class ServeBenchmark
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var source = new BenchModelOptions();
        var requests = new Option<int>("--requests") { Description = "Throughput: one-image requests submitted at once", DefaultValueFactory = _ => 32 };
        var steps = new Option<int>("--steps") { Description = "Throughput: steps per request", DefaultValueFactory = _ => 50 };
        var cfg = new Option<double>("--cfg") { Description = "Guidance scale of every request", DefaultValueFactory = _ => 4.0 };
        var maxRows = new Option<int>("--max-batch-rows") { Description = "Serving:MaxBatchRows for both parts", DefaultValueFactory = _ => 16 };
        var mixed = new Option<int>("--mixed") { Description = "Mixed workload: requests, alternating short and long, submitted at once",
            DefaultValueFactory = _ => 24 };
        var shortSteps = new Option<int>("--short-steps") { DefaultValueFactory = _ => 10 };
        var longSteps = new Option<int>("--long-steps") { DefaultValueFactory = _ => 100 };
        var threads = new Option<int?>("--threads");

        var command = new Command("serve", "Server throughput vs the raw sampler loop, and mixed-workload latency under step vs request batching")
        {
            requests, steps, cfg, maxRows, mixed, shortSteps, longSteps, threads,
        };
        source.AddTo(command);
        command.SetAction((parse, ct) => CommandLine.GuardAsync(stderr, async () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            using var loaded = source.Load(parse);
            int n = parse.GetValue(requests), rows = parse.GetValue(maxRows), m = parse.GetValue(mixed);
            double scale = parse.GetValue(cfg);
            if (n < 1 || m < 2 || rows < 2) throw new UsageException("--requests ≥ 1, --mixed ≥ 2 and --max-batch-rows ≥ 2");
            int classes = loaded.Config.NumClasses;
            SamplingOptions Options(int s, long seed) => new() { Steps = s, CfgScale = scale, Seed = seed };

            stdout.WriteLine($"# bench serve: {loaded.Name} ({loaded.Manifest.ArchitectureName}, {loaded.ImageSize}px) on {loaded.Device}, " +
                $"{loaded.Precision.ToOptionValue()}, " +
                $"torch threads {TorchSharp.torch.get_num_threads()}, cfg {scale.ToString(CultureInfo.InvariantCulture)}, MaxBatchRows {rows}, " +
                $"{DateTime.UtcNow:yyyy-MM-dd}");

            // 1. Throughput: the same n one-image requests, one after another through the sample verb's pipeline, then all at once through the engine.
            var throughput = Enumerable.Range(0, n).Select(i => new GenerationParameters(i % classes, 1, Options(parse.GetValue(steps), i))).ToList();
            // On a fresh thread like the engine's: torch's intra-op (OpenMP) threads are set up per calling thread, and on a
            // busy machine the main thread's 2-thread team spin-waits (measured: 50 steps 22.7 s vs 0.3 s with 1 thread).
            var rawWall = await OnDedicatedThread(() =>
            {
                ImagePipeline.Generate(loaded, [0], Options(2, 0)); // warm-up
                var sw = Stopwatch.StartNew();
                foreach (var p in throughput) ImagePipeline.Generate(loaded, p.Labels, p.Sampling);
                return sw.Elapsed;
            });
            double raw = n / rawWall.TotalSeconds;
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"throughput\traw sampler loop\t{n} requests x {parse.GetValue(steps)} steps\t{raw:F2} images/s"));
            foreach (var batching in new[] { BatchingMode.Step, BatchingMode.Request })
            {
                var (wall, _) = await RunEngine(loaded, batching, rows, throughput, ct);
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"throughput\tserver, {batching.ToString().ToLowerInvariant()} batching\t{n} requests x {parse.GetValue(steps)} " +
                        $"steps\t{n / wall.TotalSeconds:F2} images/s ({n / wall.TotalSeconds / raw:F2}x raw)"));
            }

            // 2. Mixed: short and long requests arriving together; latency per request from submission to PNG.
            int s1 = parse.GetValue(shortSteps), s2 = parse.GetValue(longSteps);
            var mix = Enumerable.Range(0, m).Select(i => new GenerationParameters(i % classes, 1, Options(i % 2 == 0 ? s2 : s1, 1000 + i))).ToList();
            stdout.WriteLine("mixed\tbatching\trequests\tp50_ms\tp95_ms\tshort_p50_ms\tshort_p95_ms\tlong_p50_ms\tlong_p95_ms\twall_s");
            foreach (var batching in new[] { BatchingMode.Step, BatchingMode.Request })
            {
                var (wall, latencies) = await RunEngine(loaded, batching, rows, mix, ct);
                var all = latencies.Select(l => l.TotalMilliseconds).ToList();
                var shorts = latencies.Where((_, i) => mix[i].Sampling.Steps == s1).Select(l => l.TotalMilliseconds).ToList();
                var longs = latencies.Where((_, i) => mix[i].Sampling.Steps == s2).Select(l => l.TotalMilliseconds).ToList();
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"mixed\t{batching.ToString().ToLowerInvariant()}\t{m} ({s1}/{s2} steps)\t{P(all, 50):F0}\t{P(all, 95):F0}\t" +
                    $"{P(shorts, 50):F0}\t{P(shorts, 95):F0}\t{P(longs, 50):F0}\t{P(longs, 95):F0}\t{wall.TotalSeconds:F2}"));
            }
            return CommandLine.ExitOk;
        }));
        return command;
    }


    /// <summary>Submits every request at once to a fresh engine and waits for all; returns the wall time and each request's latency.</summary>
    private static async Task<(TimeSpan Wall, TimeSpan[] Latencies)> RunEngine(LoadedModel model, BatchingMode mode, int maxRows,
        IReadOnlyList<GenerationParameters> work, CancellationToken ct)
    {
        var options = new ServingOptions
        {
            Batching = mode,
            MaxBatchRows = maxRows,
            MaxImagesPerRequest = Math.Max(1, maxRows / 2),
            QueueCapacity = work.Count,
            RequestTimeout = TimeSpan.FromHours(1),
            MaxQueuedCostPerClient = null, // the whole load is one client's: the benchmark measures batching, not shares
        };
        var queue = new Scheduler(options);
        var engine = new GenerationEngine(new ModelRunner(model), queue, options, NullServingObserver.Instance, NullLogger.Instance);
        var loop = engine.Start();
        while (!engine.Ready) await Task.Delay(5, ct); // the warm-up is not part of the measurement
        var sw = Stopwatch.StartNew();
        var requests = work.Select((p, i) => new GenerationRequest($"bench-{i}", p, options.RequestTimeout, ct)).ToList();
        foreach (var r in requests)
            if (queue.TryAdd(r) != EnqueueResult.Accepted) throw new InvalidOperationException("queue refused a benchmark request");
        var results = await Task.WhenAll(requests.Select(r => r.Completion));
        var wall = sw.Elapsed;
        engine.BeginShutdown();
        await loop;
        return (wall, results.Select(r => r.Total).ToArray());
    }

    private static Task<T> OnDedicatedThread<T>(Func<T> body)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try { done.SetResult(body()); }
            catch (Exception e) { done.SetException(e); }
        }) { IsBackground = true, Name = "raw-sampler" };
        thread.Start();
        return done.Task;
    }

    /// <summary>Nearest-rank percentile.</summary>
    private static double P(List<double> values, int percentile)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(percentile / 100.0 * sorted.Count) - 1, 0, sorted.Count - 1)];
    }
}
