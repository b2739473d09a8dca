using DiTServer.Core.Pipeline;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Logging.Abstractions;

using DiTServer.Core.Model;

namespace DiTServer.Bench.Evidence;

/// <summary><c>bench load</c>: open-loop load on the engine in-process (no HTTP): Poisson arrivals at several rates, a
/// mix of step counts and guidance scales, the same arrival sequence under <c>step</c> and <c>request</c> batching;
/// p50/p95/p99 latency (enqueue → PNGs) and throughput per rate, as a table and a CSV (plot it with tools/DiTServer.Plot).</summary>
public static class LoadBenchmark
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var source = new BenchModelOptions();
        var rates = ListOption.Create("--rates", "Offered loads in requests/s", "2,4,8", ListOption.Number("--rates", 1e-9, 1e6));
        var requests = new Option<int>("--requests") { Description = "Requests per rate and batching mode", DefaultValueFactory = _ => 60 };
        var steps = ListOption.Create("--steps", "Step counts, drawn uniformly", "4,20,100", StepCount);
        var mix = ListOption.Optional("--mix", "Sampler:steps pairs drawn uniformly instead of --steps, e.g. ddpm:50,dpmpp_2m:10", MixItem);
        var cfgs = ListOption.Create("--cfg", "Guidance scales, drawn uniformly", "1,4", ListOption.Number("--cfg", 1, 20));
        var maxRows = new Option<int>("--max-batch-rows") { DefaultValueFactory = _ => 32 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var csv = new Option<string?>("--csv") { Description = "Write the results here as CSV" };
        var threads = new Option<int?>("--threads") { Description = "Torch intra-op threads of each engine" };
        var engines = new Option<int>("--engines") { Description = "Engines (model copies, worker threads) on --device sharing one queue, as DiT:Devices does",
            DefaultValueFactory = _ => 1 };
        var command = new Command("load", "Open-loop Poisson load: latency percentiles and throughput per offered rate, step vs request batching")
        { rates, requests, steps, mix, cfgs, maxRows, seed, csv, threads, engines };
        source.AddTo(command);
        command.SetAction((parse, ct) => CommandLine.GuardAsync(stderr, async () =>
        {
            var rateList = parse.GetValue(rates)!;
            var kinds = parse.GetValue(mix) ?? parse.GetValue(steps)!.Select(n => (Sampler: SamplerKind.Ddpm, Steps: n)).ToArray();
            var stepList = kinds.Select(k => k.Steps).ToArray();
            var cfgList = parse.GetValue(cfgs)!;
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            if (parse.GetValue(engines) is < 1 or > 64) throw new UsageException("--engines must be in 1..64");
            using var loaded = source.Load(parse);
            // The other engines' copies get the first one's weights (an --arch model draws random ones on each load).
            var copies = Enumerable.Range(1, parse.GetValue(engines) - 1).Select(_ =>
            {
                var copy = source.Load(parse);
                StateDict.LoadStrict(copy.Model, loaded.Model.state_dict(), "the first engine's weights");
                return copy;
            }).ToList();
            using var _ = new DisposeAll(copies);
            var models = (IReadOnlyList<LoadedModel>)[loaded, .. copies];
            int n = parse.GetValue(requests), rows = parse.GetValue(maxRows);
            stdout.WriteLine($"# bench load: {loaded.Name} ({loaded.Manifest.ArchitectureName}, {loaded.ImageSize}px) on {loaded.Device}, " +
                $"{loaded.Precision.ToOptionValue()}, {models.Count} engine(s) × " +
                $"{parse.GetValue(threads)?.ToString(CultureInfo.InvariantCulture) ?? "default"} threads, {n} requests per point, " +
                $"steps {string.Join('/', stepList)}, " +
                $"cfg {string.Join('/', cfgList.Select(c => c.ToString(CultureInfo.InvariantCulture)))}, " +
                $"samplers {string.Join('/', kinds.Select(k => $"{k.Sampler.Name()}:{k.Steps}"))}, MaxBatchRows {rows}, " +
                $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {EvidenceCommands.Load()}");
            // cpu_s: this process's CPU time over the point. On a shared machine wall-clock throughput depends on the neighbours;
            // CPU seconds per request (the service demand) hardly does, so capacity planning (docs/scaling.md) starts from it.
            var header = "offered_rps,batching,requests,p50_ms,p95_ms,p99_ms,short_p50_ms,throughput_rps,wall_s,load,cpu_s";
            stdout.WriteLine(header.Replace(',', '\t'));
            var lines = new List<string> { header };
            foreach (var rate in rateList)
            {
                // The same arrivals and requests for both modes.
                var rng = new Random(parse.GetValue(seed) + (int)(rate * 1000));
                double at = 0;
                var work = Enumerable.Range(0, n).Select(i =>
                {
                    at += -Math.Log(1 - rng.NextDouble()) / rate;
                    var kind = kinds[rng.Next(kinds.Length)];
                    var options = new SamplingOptions { Sampler = kind.Sampler, Steps = kind.Steps, CfgScale = cfgList[rng.Next(cfgList.Length)], Seed = i };
                    return (At: at, Parameters: new GenerationParameters(i % loaded.Config.NumClasses, 1, options));
                }).ToList();
                var per = new Dictionary<BatchingMode, double>();
                foreach (var mode in new[] { BatchingMode.Step, BatchingMode.Request })
                {
                    var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                    var (latencies, wall) = await Run(models, mode, rows, work, parse.GetValue(threads), ct);
                    var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
                    var all = latencies.Select(l => l.TotalMilliseconds).ToList();
                    var shorts = latencies.Where((_, i) => work[i].Parameters.Sampling.Steps == stepList.Min()).Select(l => l.TotalMilliseconds).ToList();
                    var line = string.Create(CultureInfo.InvariantCulture,
                        $"{rate},{mode.ToString().ToLowerInvariant()},{n},{P(all, 50):F0},{P(all, 95):F0},{P(all, 99):F0},{P(shorts, 50):F0}," +
                        $"{n / wall.TotalSeconds:F2},{wall.TotalSeconds:F1},{EvidenceCommands.Load()},{cpu.TotalSeconds:F1}");
                    per[mode] = P(all, 50);
                    lines.Add(line);
                    stdout.WriteLine(line.Replace(',', '\t'));
                }
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"# rate {rate}: step p50 / request p50 = {per[BatchingMode.Step] / per[BatchingMode.Request]:F2}"));
            }
            if (parse.GetValue(csv) is { } path) await File.WriteAllLinesAsync(path, lines, ct);
            return CommandLine.ExitOk;
        }));
        return command;
    }

    /// <summary>Submits each request at its arrival time to a fresh engine; returns each latency and the wall time from the
    /// first arrival to the last completion.</summary>
    private static async Task<(TimeSpan[] Latencies, TimeSpan Wall)> Run(IReadOnlyList<LoadedModel> models, BatchingMode mode, int maxRows,
        IReadOnlyList<(double At, GenerationParameters Parameters)> work, int? threads, CancellationToken ct)
    {
        var options = new ServingOptions
        {
            Batching = mode, MaxBatchRows = maxRows, MaxImagesPerRequest = Math.Max(1, maxRows / 2),
            QueueCapacity = work.Count, RequestTimeout = TimeSpan.FromHours(1), IntraOpThreads = threads,
            MaxQueuedCostPerClient = null, // the whole load is one client's: the benchmark measures batching, not shares
        };
        var queue = new Scheduler(options, models.Count);
        var labels = DeviceLabels.Of(models.Select(m => m.Device.ToString()).ToList());
        var engine = new GenerationEngine(models.Select((m, i) => new GenerationEngine.Device(new ModelRunner(m), NullServingObserver.Instance, labels[i]))
            .ToList(),
            queue, options, NullLogger.Instance);
        var loop = engine.Start();
        while (!engine.Ready) await Task.Delay(5, ct);
        var sw = Stopwatch.StartNew();
        var requests = new List<GenerationRequest>(work.Count);
        for (int i = 0; i < work.Count; i++)
        {
            var wait = TimeSpan.FromSeconds(work[i].At) - sw.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait, ct);
            var r = new GenerationRequest($"load-{i}", work[i].Parameters, options.RequestTimeout, ct);
            if (queue.TryAdd(r) != EnqueueResult.Accepted) throw new InvalidOperationException("queue refused a request");
            requests.Add(r);
        }
        var results = await Task.WhenAll(requests.Select(r => r.Completion));
        var wall = sw.Elapsed;
        engine.BeginShutdown();
        await loop;
        return (results.Select(r => r.Total).ToArray(), wall);
    }

    /// <summary>A step count of --steps: a whole number in 1..1000.</summary>
    private static int StepCount(string s)
    {
        double v = ListOption.Number("--steps", 1, 1000)(s);
        return v == Math.Floor(v) ? (int)v : throw new UsageException("--steps takes whole numbers");
    }

    /// <summary>"ddpm:50" → (sampler, steps), checked as a request would be.</summary>
    private static (SamplerKind Sampler, int Steps) MixItem(string part)
    {
        var pieces = part.Split(':');
        if (pieces.Length != 2 || !int.TryParse(pieces[1], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
            throw new UsageException($"--mix takes sampler:steps pairs such as ddpm:50,dpmpp_2m:10, not '{part}'");
        var kind = SampleCommand.ParseSampler(pieces[0]);
        SampleCommand.ValidateOptions(new SamplingOptions { Sampler = kind, Steps = n });
        return (kind, n);
    }

    /// <summary>Nearest-rank percentile.</summary>
    private static double P(List<double> values, int percentile)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(percentile / 100.0 * sorted.Count) - 1, 0, sorted.Count - 1)];
    }

    private sealed class DisposeAll(IEnumerable<IDisposable> items) : IDisposable
    {
        public void Dispose()
        {
            foreach (var item in items) item.Dispose();
        }
    }
}
