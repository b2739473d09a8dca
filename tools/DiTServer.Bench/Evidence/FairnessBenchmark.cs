using DiTServer.Core.Pipeline;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Logging.Abstractions;

namespace DiTServer.Bench.Evidence;

/// <summary><c>bench fairness</c>: one client floods the engine (in-process, no HTTP) with wide, long requests and keeps
/// its queue share full; another client sends small requests one after another. Reports the small requests' latency
/// idle, under the flood with per-client fairness, and under the same flood when both are one client (the former FIFO
/// batcher), all in one run.</summary>
public static class FairnessBenchmark
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var source = new BenchModelOptions();
        var probes = new Option<int>("--probes") { Description = "Small requests measured per scenario", DefaultValueFactory = _ => 5 };
        var probeSteps = new Option<int>("--probe-steps") { DefaultValueFactory = _ => 4 };
        var floodSteps = new Option<int>("--flood-steps") { DefaultValueFactory = _ => 250 };
        var floodImages = new Option<int>("--flood-images") { DefaultValueFactory = _ => 8 };
        var maxRows = new Option<int>("--max-batch-rows") { DefaultValueFactory = _ => 32 };
        var threads = new Option<int?>("--threads");
        var command = new Command("fairness", "Latency of a light client's small requests while another client floods: idle, fair, and as one client (FIFO)")
        { probes, probeSteps, floodSteps, floodImages, maxRows, threads };
        source.AddTo(command);
        command.SetAction((parse, ct) => CommandLine.GuardAsync(stderr, async () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            using var model = source.Load(parse);
            int n = parse.GetValue(probes), rows = parse.GetValue(maxRows);
            var probe = new GenerationParameters(0, 1, new SamplingOptions { Steps = parse.GetValue(probeSteps), CfgScale = 4, Seed = 1 });
            var flood = new GenerationParameters(1, Math.Min(parse.GetValue(floodImages), rows / 2),
                new SamplingOptions { Steps = parse.GetValue(floodSteps), CfgScale = 4, Seed = 2 });
            stdout.WriteLine($"# bench fairness: {model.Name} ({model.Manifest.ArchitectureName}) on {model.Device}; " +
                $"probe {probe.NumImages} image × {probe.Sampling.Steps} steps cfg 4, " +
                $"flood {flood.NumImages} images × {flood.Sampling.Steps} steps cfg 4, MaxBatchRows {rows}; " +
                $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {EvidenceCommands.Load()}");
            stdout.WriteLine("scenario\tp50_ms\tmax_ms\tratio_to_idle");
            double idle = 0;
            foreach (var (name, floodClient) in new[] { ("idle", (string?)null), ("flood, fair", "flood"), ("flood, one client (FIFO)", "probe") })
            {
                var latencies = await Run(model, rows, probe, flood, floodClient, n, ct);
                double p50 = latencies.Order().ElementAt(latencies.Count / 2), max = latencies.Max();
                if (floodClient is null) idle = p50;
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name}\t{p50:F0}\t{max:F0}\t{p50 / idle:F1}"));
            }
            return CommandLine.ExitOk;
        }));
        return command;
    }

    /// <param name="floodClient">The flood's client id (null: no flood); equal to the probe's client = one client, FIFO.</param>
    private static async Task<List<double>> Run(LoadedModel model, int maxRows, GenerationParameters probe, GenerationParameters flood,
        string? floodClient, int probes, CancellationToken ct)
    {
        var options = new ServingOptions
        {
            MaxBatchRows = maxRows, MaxImagesPerRequest = Math.Max(1, maxRows / 2), QueueCapacity = 64,
            RequestTimeout = TimeSpan.FromHours(1),
            // One client stands for the former server, which had no per-client share.
            MaxQueuedCostPerClient = floodClient == "probe" ? null : 4 * flood.Cost,
        };
        var queue = new Scheduler(options);
        var engine = new GenerationEngine(new ModelRunner(model), queue, options, NullServingObserver.Instance, NullLogger.Instance);
        var loop = engine.Start();
        while (!engine.Ready) await Task.Delay(5, ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        // The flooder keeps 6 requests outstanding (2 running at MaxBatchRows, 4 waiting: its whole share when it has
        // one), re-sending as soon as one ends or a 429 clears, as in the attack.
        int outstanding = 0;
        var flooding = floodClient is null ? Task.CompletedTask : Task.Run(async () =>
        {
            int i = 0;
            while (!stop.IsCancellationRequested)
            {
                if (Volatile.Read(ref outstanding) < 6)
                {
                    var r = new GenerationRequest($"flood-{i++}", flood, options.RequestTimeout, stop.Token) { Client = floodClient };
                    if (queue.TryAdd(r) == EnqueueResult.Accepted)
                    {
                        Interlocked.Increment(ref outstanding);
                        _ = r.Completion.ContinueWith(_ => Interlocked.Decrement(ref outstanding), TaskScheduler.Default);
                        continue;
                    }
                }
                await Task.Delay(5, CancellationToken.None);
            }
        }, CancellationToken.None);
        if (floodClient is not null)
            while (engine.Snapshot().ActiveRows < Math.Min(maxRows, flood.RowsPerStep * 2) && !ct.IsCancellationRequested) await Task.Delay(5, ct);
        var latencies = new List<double>();
        for (int i = 0; i < probes; i++)
        {
            var sw = Stopwatch.StartNew();
            var r = new GenerationRequest($"probe-{i}", probe, options.RequestTimeout, ct) { Client = "probe" };
            if (queue.TryAdd(r) != EnqueueResult.Accepted) throw new InvalidOperationException("the probe was refused");
            await r.Completion;
            latencies.Add(sw.Elapsed.TotalMilliseconds);
            // In the FIFO scenario a probe waits for every flood request ahead of it; one probe is enough to show it.
            if (floodClient == "probe") break;
        }
        stop.Cancel();
        await flooding;
        engine.Abort();
        await loop;
        return latencies;
    }
}
