using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace DiTServer.Bench.Evidence;

/// <summary><c>bench fuzz</c> and <c>bench soak</c>: the full reliability runs against this program started as a real
/// HTTP server on 127.0.0.1 in a child process (the CI versions run in <c>dotnet test</c> on WebApplicationFactory).</summary>
public static class EvidenceCommands
{
    public static IEnumerable<Command> Create(TextWriter stdout, TextWriter stderr)
    {
        yield return Fuzz(stdout, stderr);
        yield return SoakCommand(stdout, stderr);
        yield return Faults(stdout, stderr);
        yield return LoadBenchmark.Create(stdout, stderr);
        yield return FairnessBenchmark.Create(stdout, stderr);
        yield return PeakBenchmark.Create(stdout, stderr);
    }

    private static Option<string> ModelOption() => new("--model") { Description = "Model folder with model.json", Required = true };

    private static Command Fuzz(TextWriter stdout, TextWriter stderr)
    {
        var model = ModelOption();
        var cases = new Option<int>("--cases") { Description = "HttpClient cases", DefaultValueFactory = _ => 4000 };
        var uploadCases = new Option<int>("--upload-cases")
        {
            Description = "Multipart upload cases for /v1/images/edits and /v1/images/variations (damaged PNGs, masks, framing)",
            DefaultValueFactory = _ => 400,
        };
        var rawCases = new Option<int>("--raw-cases") { Description = "Raw-socket cases (chunked framing, cut-off and stalled bodies, invalid UTF-8)",
            DefaultValueFactory = _ => 1200 };
        var bodyTimeout = new Option<int>("--body-timeout-seconds") { Description = "RequestBody:Timeout of the server; every stalled raw case waits this long",
            DefaultValueFactory = _ => 2 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var parallel = new Option<int>("--parallel") { DefaultValueFactory = _ => 8 };
        var command = new Command("fuzz",
            "Send generated malformed requests to every endpoint, admin included, over HttpClient and raw sockets; expect only 4xx problem+json (or 2xx), no " +
            "5xx, no error or stack trace in the server's log, a healthy server after")
        { model, cases, uploadCases, rawCases, bodyTimeout, seed, parallel };
        command.SetAction((parse, ct) => CommandLine.GuardAsync(stderr, async () =>
        {
            var root = Directory.CreateTempSubdirectory("dit-fuzz-").FullName;
            try
            {
                var manifest = DiTServer.Core.Checkpoints.ModelManifest.Load(parse.GetValue(model)!);
                var settings = TrainingShutdown.Settings(root, manifest.Config.InputSize, manifest.Config.NumClasses);
                settings["RequestBody__Timeout"] = TimeSpan.FromSeconds(parse.GetValue(bodyTimeout)).ToString("c", CultureInfo.InvariantCulture);
                await using var server = await ChildServer.StartAsync(parse.GetValue(model)!, settings, TimeSpan.FromMinutes(2));
                // Only the cases' lines count: the readiness polls during warm-up log 503s at error level.
                await Task.Delay(300, ct);
                int logStart = File.ReadAllLines(server.LogPath).Length;
                var generated = BadInputFuzzer.Generate(parse.GetValue(cases), parse.GetValue(seed), TrainingShutdown.AdminKeyValue)
                    .Concat(UploadFuzzCases.Generate(parse.GetValue(uploadCases), parse.GetValue(seed))).ToList();
                var raw = BadInputFuzzer.GenerateRaw(parse.GetValue(rawCases), parse.GetValue(seed), TrainingShutdown.AdminKeyValue,
                    await BadInputFuzzer.BodyLimitAsync(server.Client));
                stdout.WriteLine($"# bench fuzz: {generated.Count} HttpClient + {raw.Count} raw-socket cases (seed {parse.GetValue(seed)}, body timeout " +
                    $"{parse.GetValue(bodyTimeout)} s, admin API on) against pid {server.Pid} at {server.Address}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, " +
                    $"load {Load()}");
                // Raw UTF-8 header bytes (an emoji Accept) go on the wire as a hostile client would send them.
                using var client = new HttpClient(new SocketsHttpHandler { RequestHeaderEncodingSelector = (_, _) => System.Text.Encoding.UTF8 })
                { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(2) };
                var report = await BadInputFuzzer.RunAsync(client, generated, parse.GetValue(parallel), TimeSpan.FromSeconds(60), protocolRejects: true);
                var rawReport = await BadInputFuzzer.RunRawAsync(server.Address, raw, parse.GetValue(parallel), TimeSpan.FromSeconds(60));
                var ready = (int)(await server.Client.GetAsync("/health/ready", ct)).StatusCode;
                var after = await server.Client.PostAsync("/v1/images",
                    new StringContent("""{"class_label": 1, "steps": 2}""", System.Text.Encoding.UTF8, "application/json"), ct);
                await Task.Delay(500, ct); // the child's log comes through a pipe
                var log = File.ReadAllLines(server.LogPath).Skip(logStart).ToList();
                int errors = log.Count(l => l.Contains(" ERR]") || l.Contains(" FTL]")),
                    stackLines = log.Count(l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal));
                int warnings = log.Count(l => l.Contains("Client fault"));
                foreach (var (name, r, list) in new[] { ("http", report, generated.Select(c => c.Kind)), ("raw", rawReport, raw.Select(c => c.Kind)) })
                {
                    stdout.WriteLine($"kinds\t{name}: {string.Join(", ", list.GroupBy(k => k).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"))}");
                    stdout.WriteLine($"status\t{name}: {string.Join(", ", r.ByStatus.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}: {kv.Value}"))}");
                    stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"result\t{name}: {r.Cases} cases in {r.Elapsed.TotalSeconds:F1} s: 2xx {r.Status2xx}, 4xx {r.Status4xx}, 5xx {r.Status5xx}, " +
                            $"violations {r.Violations}; empty 400 from Kestrel before the app (protocol errors) {r.ProtocolRejects}"));
                    foreach (var f in r.Failures) stdout.WriteLine($"violation\t{f}");
                }
                int total5xx = report.Status5xx + rawReport.Status5xx;
                stdout.WriteLine($"total\t{report.Cases + rawReport.Cases} cases: 5xx {total5xx}, violations {report.Violations + rawReport.Violations}; " +
                    $"server log: {errors} error lines, {stackLines} stack-trace lines, {warnings} 'Client fault' warnings; after: /health/ready {ready}, a " +
                    $"valid request {(int)after.StatusCode}");
                return report.Violations + rawReport.Violations == 0 && errors == 0 && stackLines == 0 && ready == 200 && after.IsSuccessStatusCode
                    ? CommandLine.ExitOk : CommandLine.ExitFailure;
            }
            finally { Directory.Delete(root, recursive: true); }
        }));
        return command;
    }

    private static Command SoakCommand(TextWriter stdout, TextWriter stderr)
    {
        var model = ModelOption();
        var requests = new Option<int>("--requests") { DefaultValueFactory = _ => 10_000 };
        var concurrency = new Option<int>("--concurrency") { DefaultValueFactory = _ => 8 };
        var maxSteps = new Option<int>("--max-steps") { Description = "Requests use 1..max-steps steps", DefaultValueFactory = _ => 4 };
        var warmUp = new Option<double>("--warmup-fraction") { Description = "Share of the requests before the baseline sample (allocator pools grow until " +
            "every batch shape was seen)", DefaultValueFactory = _ => 0.1 };
        var command = new Command("soak",
            "N requests (valid, invalid, abandoned) against a real server on 127.0.0.1; RSS and live tensors after warm-up vs at the end, zero 5xx")
        { model, requests, concurrency, maxSteps, warmUp };
        command.SetAction((parse, ct) => CommandLine.GuardAsync(stderr, async () =>
        {
            await using var server = await ChildServer.StartAsync(parse.GetValue(model)!,
                new Dictionary<string, string> { ["Serving__QueueCapacity"] = "256",
                    ["Serving__MaxQueuedCostPerClient"] = int.MaxValue.ToString(CultureInfo.InvariantCulture) },
                TimeSpan.FromMinutes(2));
            int n = parse.GetValue(requests);
            stdout.WriteLine($"# bench soak: {n} requests, concurrency {parse.GetValue(concurrency)}, steps 1..{parse.GetValue(maxSteps)}, against pid " +
                $"{server.Pid}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {Load()}");
            async Task<MemorySample> Sample() => new(server.Rss(), (long)await server.Metric("dit_worker_live_tensors"),
                await server.Metric("dit_active_requests") + await server.Metric("dit_queue_depth") > 0);
            var r = await Soak.RunAsync(server.Client, n, parse.GetValue(concurrency), parse.GetValue(maxSteps), Sample,
                line => stdout.WriteLine($"progress\t{line}"),
                parse.GetValue(warmUp));
            stdout.WriteLine($"status\t{string.Join(", ", r.ByStatus.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}: {kv.Value}"))}, abandoned by the client: " +
                $"{r.Abandoned}");
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"result\t{r.Requests} requests in {r.Elapsed.TotalSeconds:F0} s ({r.Requests / r.Elapsed.TotalSeconds:F1}/s); 5xx {r.Status5xx}; RSS after " +
                    $"warm-up {r.Baseline.Rss / 1e6:F1} MB, at the end {r.Final.Rss / 1e6:F1} MB ({100 * r.RssGrowth:+0.0;-0.0}%), max {r.MaxRss / 1e6:F1} " +
                    $"MB; worker live tensors {r.Baseline.LiveTensors} → {r.Final.LiveTensors}; load {Load()}"));
            var (exit, took) = await server.TerminateAsync(TimeSpan.FromSeconds(40));
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sigterm\texit code {exit} after {took.TotalSeconds:F1} s"));
            return r.Status5xx == 0 && r.RssGrowth < 0.05 && r.TensorGrowth <= 0 ? CommandLine.ExitOk : CommandLine.ExitFailure;
        }));
        return command;
    }

    private static Command Faults(TextWriter stdout, TextWriter stderr)
    {
        var model = ModelOption();
        var clients = new Option<int>("--clients") { Description = "Clients that disconnect mid-generation", DefaultValueFactory = _ => 100 };
        var underLoad = new Option<int>("--sigterm-requests") { Description = "Requests sent before SIGTERM (the batch's 16 guided images run, the rest wait " +
            "in the queue)", DefaultValueFactory = _ => 24 };
        var sigtermSteps = new Option<int>("--sigterm-steps") { Description = "Steps of each of those requests (enough to be still running when the signal " +
            "arrives)", DefaultValueFactory = _ => 200 };
        var late = new Option<int>("--late-requests") { Description = "Requests sent after the signal, each on a new connection",
            DefaultValueFactory = _ => 4 };
        var shutdownTimeout = new Option<int>("--expiry-shutdown-seconds") { Description = "Host shutdown timeout of the drain-expiry run",
            DefaultValueFactory = _ => 10 };
        var drain = new Option<int>("--expiry-drain-seconds") { Description = "Serving:DrainTimeout of the drain-expiry run (1000-step requests outlive it)",
            DefaultValueFactory = _ => 3 };
        var command = new Command("faults",
            "Clients disconnecting mid-generation (slots freed, no live tensors left), then SIGTERM with requests running and queued (200 or 503 + " +
            "Retry-After each, exit 0), then the same past the drain time (running ones cut off with 503, exit within the shutdown timeout), then SIGTERM " +
            "during an admin training job (exit 0, a loadable checkpoint)")
        { model, clients, underLoad, sigtermSteps, late, shutdownTimeout, drain };
        command.SetAction((parse, ct) => CommandLine.GuardAsync(stderr, async () =>
        {
            int n = parse.GetValue(clients), m = parse.GetValue(underLoad);
            // All of these requests come from one address: lift the per-client queue share, which would otherwise answer
            // most of them 429 (this run measures disconnects and shutdown, not fairness; `bench fairness` does that).
            var settings = new Dictionary<string, string>
            {
                ["Serving__QueueCapacity"] = (n + m + 8).ToString(CultureInfo.InvariantCulture),
                ["Serving__MaxQueuedCostPerClient"] = int.MaxValue.ToString(CultureInfo.InvariantCulture),
            };
            await using var server = await ChildServer.StartAsync(parse.GetValue(model)!, settings, TimeSpan.FromMinutes(2));
            stdout.WriteLine($"# bench faults: {n} disconnecting clients, then SIGTERM with {m} requests running or queued; pid {server.Pid}, " +
                $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {Load()}");
            static StringContent Body(int i, int steps) =>
                new($"{{\"class_label\": {i % 10}, \"steps\": {steps}, \"cfg_scale\": 4, \"seed\": {i}}}", System.Text.Encoding.UTF8, "application/json");
            async Task<double> Busy() => await server.Metric("dit_active_requests") + await server.Metric("dit_queue_depth");

            // 1. Disconnects: one first (builds the 1000-step tables), then n at once, cancelled once the worker runs them.
            long rss0 = 0, tensors0 = 0;
            foreach (var wave in new[] { 1, n })
            {
                var ctss = Enumerable.Range(0, wave).Select(_ => new CancellationTokenSource()).ToList();
                var posts = ctss.Select(async (cts, i) =>
                {
                    try { return (int)(await server.Client.PostAsync("/v1/images", Body(i, 1000), cts.Token)).StatusCode; }
                    catch (OperationCanceledException) { return 0; }
                }).ToList();
                var until = DateTime.UtcNow.AddSeconds(30);
                while (await Busy() < wave && DateTime.UtcNow < until) await Task.Delay(20, ct);
                await Task.Delay(300, ct);
                long inFlight = (long)await server.Metric("dit_worker_live_tensors");
                double active = await server.Metric("dit_active_requests"), queued = await server.Metric("dit_queue_depth");
                foreach (var cts in ctss) cts.Cancel();
                var codes = await Task.WhenAll(posts);
                var deadline = DateTime.UtcNow.AddSeconds(60);
                while (await Busy() > 0 && DateTime.UtcNow < deadline) await Task.Delay(50, ct);
                long rss = server.Rss(), tensors = (long)await server.Metric("dit_worker_live_tensors");
                foreach (var cts in ctss) cts.Dispose();
                if (wave == 1) { rss0 = rss; tensors0 = tensors; continue; }
                double busyAfter = await Busy();
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"disconnect\t{wave} clients ({active} running, {queued} queued when cancelled; {codes.Count(c => c == 0)} cancelled, other answers: " +
                        $"{codes.Count(c => c != 0)}); active+queued after: {busyAfter}; worker live tensors {tensors0} before, {inFlight} in flight, " +
                        $"{tensors} after; RSS {rss0 / 1e6:F1} → {rss / 1e6:F1} MB"));
            }
            var ok = await server.Client.PostAsync("/v1/images", Body(7, 2), ct);
            stdout.WriteLine($"after\ta 2-step request: {(int)ok.StatusCode}");

            // 2. SIGTERM with m requests in, 16 running (32 rows) and the rest queued, then late ones: running ones finish
            // within the drain time (200), queued and late ones get 503, the process exits with 0.
            int running = Math.Min(m, 16);
            var drained = await ShutdownUnderLoad.RunAsync(server, m, parse.GetValue(sigtermSteps), running, parse.GetValue(late), TimeSpan.FromSeconds(60));
            stdout.WriteLine($"sigterm\t{drained.Summary()} (drain time 25 s, host shutdown timeout 30 s); load {Load()}");
            foreach (var a in drained.Answers.Where(a => a.Late)) stdout.WriteLine($"late\t{a.Kind}: {a.What}");
            foreach (var v in drained.Violations) stdout.WriteLine($"violation\t{v.What}");
            bool drainedOk = !drained.Violations.Any() && drained.ExitCode == 0 && drained.Count(ShutdownUnderLoad.Kind.Finished) == running
                && drained.Count(ShutdownUnderLoad.Kind.NotStarted) == m - running;

            // 3. The same with 1000-step requests on a server whose drain time runs out first: the running ones are cut off
            // with 503 at the next step and the process still exits within the host's shutdown timeout.
            var timeout = TimeSpan.FromSeconds(parse.GetValue(shutdownTimeout));
            await using var expiring = await ChildServer.StartAsync(parse.GetValue(model)!, new Dictionary<string, string>(settings)
            {
                ["shutdownTimeoutSeconds"] = parse.GetValue(shutdownTimeout).ToString(CultureInfo.InvariantCulture),
                ["Serving__DrainTimeout"] = TimeSpan.FromSeconds(parse.GetValue(drain)).ToString("c", CultureInfo.InvariantCulture),
            }, TimeSpan.FromMinutes(2));
            var cut = await ShutdownUnderLoad.RunAsync(expiring, m, 1000, running, parse.GetValue(late), timeout + TimeSpan.FromSeconds(30));
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"expiry\t{cut.Summary()} (drain time {parse.GetValue(drain)} s, host shutdown timeout {timeout.TotalSeconds:F0} s); load {Load()}"));
            foreach (var a in cut.Answers.Where(a => a.Late)) stdout.WriteLine($"late\t{a.Kind}: {a.What}");
            foreach (var v in cut.Violations) stdout.WriteLine($"violation\t{v.What}");
            bool cutOk = !cut.Violations.Any() && cut.ExitCode == 0 && cut.ExitAfter < timeout && cut.Count(ShutdownUnderLoad.Kind.CutOff) == running
                && cut.Count(ShutdownUnderLoad.Kind.NotStarted) == m - running;

            // 4. SIGTERM while an admin training job fine-tunes the served model: exit 0 within the host's shutdown timeout,
            // with a checkpoint that loads at least at the step reached (resumable). Pixel models with one channel only:
            // the job trains on a synthetic IDX set of the model's size.
            bool trainingOk = true;
            var manifest = DiTServer.Core.Checkpoints.ModelManifest.Load(parse.GetValue(model)!);
            if (manifest.VaePath is null && manifest.Config.InChannels == 1)
            {
                var root = Directory.CreateTempSubdirectory("dit-faults-train-").FullName;
                try
                {
                    await using var training = await ChildServer.StartAsync(parse.GetValue(model)!,
                        TrainingShutdown.Settings(root, manifest.Config.InputSize, manifest.Config.NumClasses), TimeSpan.FromMinutes(2));
                    var t = await TrainingShutdown.RunAsync(training, Path.Combine(root, "runs"), minSteps: 5, TimeSpan.FromSeconds(60));
                    stdout.WriteLine($"training\tSIGTERM during an admin fine-tuning job: {t.Summary()} (host shutdown timeout 30 s); load {Load()}");
                    await using var restarted = await ChildServer.StartAsync(parse.GetValue(model)!,
                        TrainingShutdown.Settings(root, manifest.Config.InputSize, manifest.Config.NumClasses), TimeSpan.FromMinutes(2));
                    var (listed, listedStep, final, finalStep) = await TrainingShutdown.ResumeAfterRestartAsync(restarted, moreSteps: 3);
                    stdout.WriteLine($"resume\tafter a restart the run is listed {listed} at step {listedStep}; POST .../resume with steps {listedStep + 3}: " +
                        $"{final} at step {finalStep}");
                    trainingOk = t.Ok && listed == "Interrupted" && listedStep == t.CheckpointStep && final == "Succeeded" && finalStep == listedStep + 3;
                }
                finally { Directory.Delete(root, recursive: true); }
            }
            else stdout.WriteLine("training\tskipped: the SIGTERM-during-training run fine-tunes one-channel pixel models only");
            return drainedOk && cutOk && trainingOk && ok.IsSuccessStatusCode ? CommandLine.ExitOk : CommandLine.ExitFailure;
        }));
        return command;
    }

    /// <summary>The 1-minute load average, to print beside every measurement.</summary>
    public static string Load()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "?"; }
    }
}
