using DiTServer.Bench.Evidence;
using DiTServer.Api.Hosting;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Kind = DiTServer.Bench.Evidence.ShutdownUnderLoad.Kind;

namespace DiTServer.Api.Tests;

/// <summary>SIGTERM to the real server in a child process (what a container stop sends; WebApplicationFactory has no
/// signal and no Kestrel) while requests run and others are queued: the fast CI version of <c>bench faults</c>' shutdown
/// runs. The demo model, one torch thread: a one-image guided step costs a few ms, so 1000 steps outlive a 1 s drain
/// time on any CPU while 100 steps finish well inside the default 25 s.</summary>
public sealed class ShutdownTests
{
    private static string DemoModel => Path.Combine(RepositoryPaths.Root, "models", "dit-fashion-mnist");

    /// <summary>Two guided one-image requests fill the 4-row batch; the others wait in the queue.</summary>
    private static Dictionary<string, string> TwoRunning(params (string Key, string Value)[] more)
    {
        var settings = new Dictionary<string, string>
        {
            ["Serving__MaxBatchRows"] = "4",
            ["Serving__MaxImagesPerRequest"] = "2",
            ["Serving__QueueCapacity"] = "16",
            // All requests come from one address and arrive together: its share of places must hold them all.
            ["Serving__MaxQueuedRequestsPerClient"] = "16",
            ["Serving__IntraOpThreads"] = "1",
        };
        foreach (var (k, v) in more) settings[k] = v;
        return settings;
    }

    private static string Explain(ShutdownUnderLoad.Report r, ChildServer server)
    {
        var log = File.Exists(server.LogPath) ? string.Join('\n', File.ReadLines(server.LogPath).TakeLast(30)) : "";
        return $"{r.Summary()}\n{string.Join('\n', r.Answers.Select(a => $"{(a.Late ? "late" : "sent")} {a.Kind}: {a.What}"))}\n{log}";
    }

    [Fact]
    public async Task Sigterm_with_requests_running_and_queued_finishes_the_running_ones_answers_the_rest_503_and_exits_0()
    {
        await using var server = await ChildServer.StartAsync(DemoModel, TwoRunning(), TimeSpan.FromMinutes(1));
        var r = await ShutdownUnderLoad.RunAsync(server, requests: 6, steps: 100, running: 2, late: 3, exitTimeout: TimeSpan.FromSeconds(40));
        var why = Explain(r, server);
        Assert.True(!r.Violations.Any(), why);
        Assert.True(r.ExitCode == 0, why);
        Assert.True(r.Count(Kind.Finished) == 2, why);   // the running ones completed during the drain
        Assert.True(r.Count(Kind.NotStarted) == 4, why); // the queued ones got their 503 instead of being run
        // A request after the signal meets the closed queue (503) or the closing listener, never a place in the batch.
        Assert.True(r.Answers.Where(a => a.Late).All(a => a.Kind is Kind.Refused or Kind.NotAccepted or Kind.NotStarted), why);
        Assert.True(r.ExitAfter < TimeSpan.FromSeconds(30), why);
    }

    [Fact]
    public async Task Sigterm_past_the_drain_time_answers_the_running_requests_503_and_exits_within_the_shutdown_timeout()
    {
        var shutdown = TimeSpan.FromSeconds(8);
        await using var server = await ChildServer.StartAsync(DemoModel,
            TwoRunning(("shutdownTimeoutSeconds", "8"), ("Serving__DrainTimeout", "00:00:01")), TimeSpan.FromMinutes(1));
        var r = await ShutdownUnderLoad.RunAsync(server, requests: 6, steps: 1000, running: 2, late: 2, exitTimeout: shutdown + TimeSpan.FromSeconds(20));
        var why = Explain(r, server);
        Assert.True(!r.Violations.Any(), why);
        Assert.True(r.ExitCode == 0, why);
        Assert.True(r.Count(Kind.CutOff) == 2, why);     // running when the drain time ran out: 503, not a dropped connection
        Assert.True(r.Count(Kind.NotStarted) == 4, why);
        Assert.True(r.ExitAfter < shutdown, why);
    }

    [Fact]
    public void A_drain_time_not_shorter_than_the_hosts_shutdown_timeout_is_refused_at_start()
    {
        var validator = new ServingOptionsValidator(Options.Create(new HostOptions { ShutdownTimeout = TimeSpan.FromSeconds(30) }));
        var refused = validator.Validate(null, new ServingOptions { DrainTimeout = TimeSpan.FromSeconds(30) });
        Assert.True(refused.Failed);
        Assert.Contains("Serving:DrainTimeout", refused.FailureMessage);
        Assert.True(validator.Validate(null, new ServingOptions { DrainTimeout = TimeSpan.FromSeconds(25) }).Succeeded);
    }
}
