using DiTServer.Core.Pipeline;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Api.Jobs;
using DiTServer.Api.Tenants;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace DiTServer.Bench.Evidence;

/// <summary><c>bench fairness</c>: fair sharing between clients, measured in-process (no HTTP) on a real engine and the
/// real scheduler and job store. Cases (<c>--cases</c>):
/// <list type="bullet">
/// <item><c>two</c>: one client floods with wide, long requests; another sends small requests one after another. The
/// small requests' latency idle, under the flood, and when both are one client (the former FIFO batcher).</item>
/// <item><c>clients</c>: N clients (<c>--clients</c>, 4 and 16) flood at once, then a new client's small request; its
/// latency against idle, and the goal max(10 × idle, 3 s).</item>
/// <item><c>places</c>: clients flood the queue one after another with the issue's request (1 image × 1000 steps, cfg 1):
/// how many places each gets, and that a newcomer still gets one.</item>
/// <item><c>results</c>: one client makes 2 × Jobs:MaxResults small jobs; does another client's earlier result survive?</item>
/// <item><c>tenants</c>: two tenants of weights 2 and 1 flood: their share of the rows stepped and rows per forward.</item>
/// </list></summary>
public static class FairnessBenchmark
{
    public static readonly string[] AllCases = ["two", "clients", "places", "results", "tenants"];

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var source = new BenchModelOptions();
        var cases = ListOption.Create("--cases", $"Cases to run ({string.Join(", ", AllCases)})", string.Join(",", AllCases),
            c => AllCases.Contains(c) ? c : throw new UsageException($"--cases: unknown case '{c}' (known: {string.Join(", ", AllCases)})"));
        var probes = new Option<int>("--probes") { Description = "Small requests measured per scenario", DefaultValueFactory = _ => 5 };
        var probeSteps = new Option<int>("--probe-steps") { DefaultValueFactory = _ => 4 };
        var floodSteps = new Option<int>("--flood-steps") { DefaultValueFactory = _ => 250 };
        var floodImages = new Option<int>("--flood-images") { DefaultValueFactory = _ => 8 };
        var maxRows = new Option<int>("--max-batch-rows") { DefaultValueFactory = _ => 32 };
        var clients = ListOption.Create("--clients", "Flooding clients of the 'clients' case", "4,16",
            c => int.TryParse(c, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 48
                ? n : throw new UsageException($"--clients: '{c}' is not 1-48"));
        var shareSeconds = new Option<double>("--share-seconds") { Description = "Measurement window of the 'tenants' case", DefaultValueFactory = _ => 6 };
        var threads = new Option<int?>("--threads");
        var command = new Command("fairness", "Fair sharing between clients: a light client's latency beside 1, 4 and 16 flooding clients, queue places, " +
            "result retention and tenant weights")
        { cases, probes, probeSteps, floodSteps, floodImages, maxRows, clients, shareSeconds, threads };
        source.AddTo(command);
        command.SetAction((parse, ct) => CommandLine.GuardAsync(stderr, async () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            if (parse.GetValue(probes) < 1) throw new UsageException("--probes must be at least 1");
            if (parse.GetValue(shareSeconds) is not (> 0 and <= 600)) throw new UsageException("--share-seconds must be in (0, 600]");
            using var model = source.Load(parse);
            int n = parse.GetValue(probes), rows = parse.GetValue(maxRows);
            var run = parse.GetValue(cases)!.ToHashSet();
            var probe = new GenerationParameters(0, 1, new SamplingOptions { Steps = parse.GetValue(probeSteps), CfgScale = 4, Seed = 1 });
            var flood = new GenerationParameters(1, Math.Min(parse.GetValue(floodImages), rows / 2),
                new SamplingOptions { Steps = parse.GetValue(floodSteps), CfgScale = 4, Seed = 2 });
            stdout.WriteLine($"# bench fairness: {model.Name} ({model.Manifest.ArchitectureName}) on {model.Device}; " +
                $"probe {probe.NumImages} image × {probe.Sampling.Steps} steps cfg 4, " +
                $"flood {flood.NumImages} images × {flood.Sampling.Steps} steps cfg 4, MaxBatchRows {rows}; " +
                $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {EvidenceCommands.Load()}");
            double idle = 0;
            if (run.Contains("two") || run.Contains("clients"))
            {
                stdout.WriteLine("scenario\tp50_ms\tmax_ms\tratio_to_idle\tgoal_ms\tmet");
                idle = Row(stdout, "idle", await Run(model, rows, probe, flood, [], n, ct), 0);
            }
            if (run.Contains("two"))
            {
                Row(stdout, "1 flooding client, fair", await Run(model, rows, probe, flood, ["flood"], n, ct), idle);
                Row(stdout, "flood, one client (FIFO)", await Run(model, rows, probe, flood, ["probe"], n, ct), idle);
            }
            if (run.Contains("clients"))
                foreach (int count in parse.GetValue(clients)!)
                    Row(stdout, $"{count} flooding clients, fair", await Run(model, rows, probe, flood,
                        Enumerable.Range(0, count).Select(i => $"flood-{i}").ToArray(), n, ct), idle);
            if (run.Contains("places")) Places(stdout);
            if (run.Contains("results")) await Results(stdout, model, rows, ct);
            if (run.Contains("tenants")) await Tenants(stdout, model, rows, flood, TimeSpan.FromSeconds(parse.GetValue(shareSeconds)), ct);
            return CommandLine.ExitOk;
        }));
        return command;
    }

    /// <summary>The issue's goal for a light request beside flooding clients: max(10 × its idle latency, 3 s).</summary>
    public static double GoalMs(double idleMs) => Math.Max(10 * idleMs, 3000);

    private static double Row(TextWriter stdout, string name, List<double> latencies, double idle)
    {
        double p50 = latencies.Order().ElementAt(latencies.Count / 2), max = latencies.Max();
        if (idle == 0) idle = p50;
        double goal = GoalMs(idle);
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name}\t{p50:F0}\t{max:F0}\t{p50 / idle:F1}\t{goal:F0}\t{(max <= goal ? "yes" : "NO")}"));
        return p50;
    }

    private static ServingOptions Options(int maxRows) => new()
    {
        MaxBatchRows = maxRows, MaxImagesPerRequest = Math.Max(1, maxRows / 2), RequestTimeout = TimeSpan.FromHours(1),
    };

    /// <summary>An engine on its own scheduler, started and warmed up; disposing aborts it.</summary>
    private sealed class Engine : IAsyncDisposable
    {
        public required Scheduler Queue { get; init; }
        public required GenerationEngine Core { get; init; }
        public required Task Loop { get; init; }

        public static async Task<Engine> StartAsync(LoadedModel model, ServingOptions options, IServingObserver? observer, CancellationToken ct)
        {
            var queue = new Scheduler(options);
            var engine = new GenerationEngine(new ModelRunner(model), queue, options, observer ?? NullServingObserver.Instance, NullLogger.Instance);
            var loop = engine.Start();
            while (!engine.Ready) await Task.Delay(5, ct);
            return new Engine { Queue = queue, Core = engine, Loop = loop };
        }

        /// <summary>Waits until the engine runs at least <paramref name="rows"/> rows (the flood has taken its places).</summary>
        public async Task WaitForRows(int rows, CancellationToken ct)
        {
            var deadline = Stopwatch.StartNew();
            while (Core.Snapshot().ActiveRows < rows)
            {
                if (deadline.Elapsed > TimeSpan.FromMinutes(2)) throw new TimeoutException($"the flood never reached {rows} running rows");
                await Task.Delay(5, ct);
            }
        }

        public async ValueTask DisposeAsync()
        {
            Core.Abort();
            await Loop;
        }
    }

    /// <summary>A client that keeps <paramref name="outstanding"/> requests in the engine, re-sending as soon as one ends or
    /// a refusal clears, as in the issue's attack.</summary>
    private static Task Flood(Scheduler queue, string client, ClientShare share, GenerationParameters flood, int outstanding,
        IProgress<GenerationProgress>? progress, TimeSpan timeout, CancellationToken stop) => Task.Run(async () =>
    {
        int open = 0, i = 0;
        while (!stop.IsCancellationRequested)
        {
            if (Volatile.Read(ref open) < outstanding)
            {
                var r = new GenerationRequest($"{client}-{i++}", flood, timeout, stop) { Client = client, Share = share, Progress = progress };
                if (queue.TryAdd(r) == EnqueueResult.Accepted)
                {
                    Interlocked.Increment(ref open);
                    _ = r.Completion.ContinueWith(_ => Interlocked.Decrement(ref open), TaskScheduler.Default);
                    continue;
                }
            }
            await Task.Delay(5, CancellationToken.None);
        }
    }, CancellationToken.None);

    /// <param name="floodClients">The flooding clients (none: idle); only the probe's own client = one client, FIFO.</param>
    private static async Task<List<double>> Run(LoadedModel model, int maxRows, GenerationParameters probe, GenerationParameters flood,
        string[] floodClients, int probes, CancellationToken ct)
    {
        bool fifo = floodClients is ["probe"];
        var options = Options(maxRows);
        // One client stands for the former server, which had no per-client share.
        options.MaxQueuedCostPerClient = fifo ? null : 4 * flood.Cost;
        if (fifo) options.MaxQueuedRequestsPerClient = options.QueueCapacity;
        await using var engine = await Engine.StartAsync(model, options, null, ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        // One flooder keeps 6 requests outstanding (2 running at MaxBatchRows, 4 waiting: its whole cost share), as the
        // first version of this benchmark; several keep 3 each (2 running, 1 waiting), within the queue's places.
        int outstanding = floodClients.Length == 1 ? 6 : 3;
        var flooding = floodClients
            .Select(c => Flood(engine.Queue, c, ClientShare.Default, flood, outstanding, null, options.RequestTimeout, stop.Token)).ToList();
        if (floodClients.Length > 0)
            await engine.WaitForRows(Math.Min(options.EffectiveMaxRunningRows, Math.Min(maxRows, flood.RowsPerStep * 2) * floodClients.Length), ct);
        var latencies = new List<double>();
        for (int i = 0; i < probes; i++)
        {
            var sw = Stopwatch.StartNew();
            var r = new GenerationRequest($"probe-{i}", probe, options.RequestTimeout, ct) { Client = "probe" };
            if (engine.Queue.TryAdd(r) is var outcome && outcome != EnqueueResult.Accepted)
                throw new InvalidOperationException($"the probe was refused ({outcome})");
            await r.Completion;
            latencies.Add(sw.Elapsed.TotalMilliseconds);
            // In the FIFO scenario a probe waits for every flood request ahead of it; one probe is enough to show it.
            if (fifo) break;
        }
        stop.Cancel();
        await Task.WhenAll(flooding);
        return latencies;
    }

    /// <summary>Queue places with the default <see cref="ServingOptions"/> (no engine: nothing leaves the queue):
    /// clients flood one after another with the issue's request until refused.</summary>
    private static void Places(TextWriter stdout)
    {
        var options = new ServingOptions();
        var queue = new Scheduler(options);
        var request = new GenerationParameters(0, 1, new SamplingOptions { Steps = 1000, CfgScale = 1, Seed = 1 });
        stdout.WriteLine($"# places: QueueCapacity {options.QueueCapacity}, MaxQueuedRequestsPerClient {options.EffectiveMaxQueuedRequestsPerClient}, " +
            $"QueueReserve {options.EffectiveQueueReserve}, MaxQueuedCostPerClient {options.MaxQueuedCostPerClient}; request 1 image × 1000 steps cfg 1 " +
            $"({request.Cost} row-steps); clients flood one after another");
        stdout.WriteLine("client\tplaces\trefused_with\tqueued_total");
        for (int c = 0; queue.Count < options.QueueCapacity && c < 64; c++)
        {
            int places = 0;
            EnqueueResult outcome;
            while ((outcome = queue.TryAdd(new GenerationRequest($"c{c}-{places}", request, options.RequestTimeout, CancellationToken.None)
                   { Client = $"client-{c}" }))
                   == EnqueueResult.Accepted)
                places++;
            stdout.WriteLine($"client-{c}\t{places}\t{outcome}\t{queue.Count}");
            if (places == 0) break;
        }
        queue.Close();
    }

    /// <summary>Result retention through the real <see cref="JobStore"/> with the default <see cref="JobOptions"/>: client
    /// "keeper" makes one job, then client "churn" makes 2 × MaxResults one-step jobs; is keeper's result still there?</summary>
    private static async Task Results(TextWriter stdout, LoadedModel model, int maxRows, CancellationToken ct)
    {
        var jobOptions = new JobOptions();
        var options = Options(maxRows);
        await using var engine = await Engine.StartAsync(model, options, null, ct);
        var store = new JobStore(engine.Queue, Microsoft.Extensions.Options.Options.Create(jobOptions), Microsoft.Extensions.Options.Options.Create(options),
            TimeProvider.System, NullLogger<JobStore>.Instance);
        var small = new GenerationParameters(0, 1, new SamplingOptions { Steps = 1, CfgScale = 1, Seed = 3 });
        var keeper = new Caller("keeper", ClientShare.Default, null);
        var churn = new Caller("churn", ClientShare.Default, null);
        var sw = Stopwatch.StartNew();
        var (kept, _) = store.Create(small, caller: keeper);
        if (kept is null) throw new InvalidOperationException("the keeper's job was refused");
        await kept.Finished;
        int total = 2 * jobOptions.MaxResults, made = 0;
        var open = new List<Task>();
        var churned = new List<Job>();
        while (made < total)
        {
            open.RemoveAll(t => t.IsCompleted);
            if (open.Count < 8 && store.Create(small, caller: churn) is ({ } job, _))
            {
                churned.Add(job);
                open.Add(job.Finished);
                made++;
            }
            else await Task.WhenAny([.. open, Task.Delay(5, ct)]);
        }
        await Task.WhenAll(open);
        store.Sweep();
        var elapsed = sw.Elapsed;
        int churnHeld = churned.Count(j => store.Get(j.Id) is not null);
        bool keeperHeld = store.Get(kept.Id) is not null;
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"# results: Jobs:MaxResults {jobOptions.MaxResults}, MaxResultsPerClient {jobOptions.EffectiveMaxResultsPerClient}, " +
            $"ResultTtl {jobOptions.ResultTtl}; " +
            $"'keeper' made 1 job, then 'churn' made {total} one-step jobs in {elapsed.TotalSeconds:F1} s (within the TTL)"));
        stdout.WriteLine("client\tjobs_made\tresults_held");
        stdout.WriteLine($"keeper\t1\t{(keeperHeld ? 1 : 0)}");
        stdout.WriteLine($"churn\t{total}\t{churnHeld}");
        stdout.WriteLine($"keeper's result kept: {(keeperHeld ? "yes" : "NO")}");
    }

    /// <summary>Counts rows stepped per client (a progress report with Step &gt; 0 is one step of that request).</summary>
    private sealed class RowCounter(int rowsPerStep) : IProgress<GenerationProgress>
    {
        private long rows;
        public long Rows => Interlocked.Read(ref rows);
        public void Report(GenerationProgress value)
        {
            if (value.Step > 0) Interlocked.Add(ref rows, rowsPerStep);
        }
    }

    /// <summary>Counts forwards and their rows.</summary>
    private sealed class ForwardCounter : IServingObserver
    {
        private long forwards, rows;
        public (long Forwards, long Rows) Totals => (Interlocked.Read(ref forwards), Interlocked.Read(ref rows));
        public void Admitted(TimeSpan queueWait) { }
        public void Forward(int rows, int requests, TimeSpan duration)
        {
            Interlocked.Increment(ref forwards);
            Interlocked.Add(ref this.rows, rows);
        }
        public void ImagesGenerated(int count) { }
        public void WorkerError() { }
        public void Occupancy(int queued, int active) { }
    }

    /// <summary>Two tenants (their <see cref="ClientShare"/> weights as <see cref="TenantDirectory.CallerOf"/> gives them)
    /// flood with the same requests; rows stepped per tenant over a window once both run.</summary>
    private static async Task Tenants(TextWriter stdout, LoadedModel model, int maxRows, GenerationParameters flood, TimeSpan window, CancellationToken ct)
    {
        var options = Options(maxRows);
        var forwards = new ForwardCounter();
        await using var engine = await Engine.StartAsync(model, options, forwards, ct);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var tenants = new[] { (Name: "heavy", Weight: 2.0), (Name: "light", Weight: 1.0) }
            .Select(t => (t.Name, t.Weight,
                Caller: TenantDirectory.CallerOf(new TenantOptions { Name = t.Name, ApiKeySha256 = new string('0', 64), Weight = t.Weight }),
                Counter: new RowCounter(flood.RowsPerStep)))
            .ToList();
        const int outstanding = 4;
        var flooding = tenants
            .Select(t => Flood(engine.Queue, t.Caller.Client, t.Caller.Share, flood, outstanding, t.Counter, options.RequestTimeout, stop.Token))
            .ToList();
        await engine.WaitForRows(Math.Min(options.EffectiveMaxRunningRows, 2 * Math.Min(maxRows, outstanding * flood.RowsPerStep)), ct);
        var rows0 = tenants.Select(t => t.Counter.Rows).ToList();
        var f0 = forwards.Totals;
        await Task.Delay(window, ct);
        var rows = tenants.Select((t, i) => t.Counter.Rows - rows0[i]).ToList();
        var f1 = forwards.Totals;
        stop.Cancel();
        await Task.WhenAll(flooding);
        long forwardCount = f1.Forwards - f0.Forwards, all = rows.Sum();
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"# tenants: two tenants flood {flood.NumImages} images × {flood.Sampling.Steps} steps cfg 4, {outstanding} outstanding each; " +
            $"{forwardCount} forwards of {(f1.Rows - f0.Rows) / (double)Math.Max(1, forwardCount):F1} rows in {window.TotalSeconds:F0} s"));
        stdout.WriteLine("tenant\tweight\trows_stepped\tshare\texpected_share\trows_per_forward");
        double weights = tenants.Sum(t => t.Weight);
        for (int i = 0; i < tenants.Count; i++)
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{tenants[i].Name}\t{tenants[i].Weight:F0}\t{rows[i]}\t{rows[i] / (double)Math.Max(1, all):F2}\t{tenants[i].Weight / weights:F2}\t" +
                $"{rows[i] / (double)Math.Max(1, forwardCount):F1}"));
    }
}
