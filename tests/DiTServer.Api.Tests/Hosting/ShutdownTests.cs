using System.Net;
using DiTServer.Bench.Evidence;
using DiTServer.Api.Hosting;
using DiTServer.Core.Serving;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Kind = DiTServer.Bench.Evidence.ShutdownUnderLoad.Kind;

namespace DiTServer.Api.Tests;

/// <summary>Graceful shutdown while requests run and others are queued. In process (the real Program on the tiny model,
/// the worker held by a <see cref="StepGate"/>, the drain time on a fake clock, the host's stop calls made by the test):
/// the order of events, on any machine.
/// Then SIGTERM to the real server in a child process (what a container stop sends; WebApplicationFactory has no signal
/// and no Kestrel): every request answered through Kestrel and exit 0, the fast CI version of <c>bench faults</c>' runs.</summary>
public sealed class ShutdownTests
{
    private static string DemoModel => Path.Combine(RepositoryPaths.Root, "models", "dit-fashion-mnist");
    private static readonly TimeSpan Drain = TimeSpan.FromSeconds(5);

    /// <summary>Two guided one-image requests fill the 4-row batch; the others wait in the queue. One client sends all of
    /// them at once: its share of places must hold them all.</summary>
    private static readonly (string, string)[] TwoRunningInProcess =
    [
        ("Serving:MaxBatchRows", "4"), ("Serving:MaxImagesPerRequest", "2"), ("Serving:QueueCapacity", "16"),
        ("Serving:MaxQueuedRequestsPerClient", "16"), ("Serving:IntraOpThreads", "1"), ("Serving:WarmUp", "false"),
        ("Serving:DrainTimeout", "00:00:05"),
    ];

    private static string Body(int seed, int steps) => $$"""{ "class_label": 1, "steps": {{steps}}, "seed": {{seed}}, "cfg_scale": 2 }""";

    /// <summary>Two requests of <paramref name="steps"/> steps running and four queued, the worker held after a forward;
    /// then the host's stop begins (StoppingAsync closes the queue) and the worker is let through one step boundary,
    /// where the four queued ones must be answered 503 "not started" while the two running ones are not answered.
    /// Returns the two running answers and the worker's stop.</summary>
    private static async Task<(List<Task<HttpResponseMessage>> Running, Task Stopping)> StopWithTwoRunningAndFourQueued(
        ServerFactory factory, StepGate gate, int steps)
    {
        var client = factory.CreateClient();
        // One at a time, so that which requests run does not depend on when they arrive: the first is admitted alone and
        // the worker is held after its forward; the second waits until the gate lets the worker schedule again.
        var running = new List<Task<HttpResponseMessage>> { client.PostAsync("/v1/images", JobsTestClient.Json(Body(0, steps))) };
        await factory.WaitFor(s => s.ActiveRequests == 1, "the first request running");
        running.Add(client.PostAsync("/v1/images", JobsTestClient.Json(Body(1, steps))));
        await factory.WaitFor(s => s.QueueDepth == 1, "the second request queued behind the held worker");
        gate.Allow();
        await factory.WaitFor(s => s.ActiveRequests == 2, "two requests running");
        var queued = Enumerable.Range(2, 4).Select(seed => client.PostAsync("/v1/images", JobsTestClient.Json(Body(seed, steps)))).ToList();
        await factory.WaitFor(s => s.QueueDepth == 4, "four requests queued");

        // The host's two calls on SIGTERM, made here so that the order is the test's: StoppingAsync first (before Kestrel
        // waits for open requests), StopAsync last (it returns once the worker's loop has ended). Through IHost.StopAsync
        // the app's own Run would dispose the services under the answers still being written by the test server.
        var worker = factory.Services.GetServices<IHostedService>().OfType<GenerationWorker>().Single();
        await worker.StoppingAsync(CancellationToken.None);
        var stopping = worker.StopAsync(CancellationToken.None);
        gate.Allow(); // one step boundary, where the worker ends the queue; the running requests cannot end before more
        foreach (var q in queued)
        {
            var response = await q.WaitAsync(TimeSpan.FromMinutes(1));
            var problem = await JobsTestClient.AssertProblem(response, HttpStatusCode.ServiceUnavailable);
            Assert.Contains("was not started", problem.GetProperty("detail").GetString());
            Assert.True(response.Headers.RetryAfter?.Delta > TimeSpan.Zero, "503 without Retry-After");
        }
        Assert.All(running, r => Assert.False(r.IsCompleted, "a running request was answered before the gate let it finish"));
        Assert.False(stopping.IsCompleted, "the worker stopped while requests were still running");
        return (running, stopping);
    }

    [Fact]
    public async Task A_stop_answers_the_queued_requests_503_at_once_and_finishes_the_running_ones_within_the_drain_time()
    {
        var gate = new StepGate();
        using var factory = new ServerFactory(TwoRunningInProcess) { Gate = gate, Clock = new FakeTimeProvider() };
        var (running, stopping) = await StopWithTwoRunningAndFourQueued(factory, gate, steps: 6);

        gate.Open(); // the drain time never passes on the fake clock: the running requests run to their end
        foreach (var r in running)
        {
            var response = await r.WaitAsync(TimeSpan.FromMinutes(1));
            Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
            Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        }
        await stopping.WaitAsync(TimeSpan.FromMinutes(1));
    }

    [Fact]
    public async Task At_the_end_of_the_drain_time_the_running_requests_are_answered_503_and_the_worker_stops()
    {
        var gate = new StepGate();
        var clock = new FakeTimeProvider();
        using var factory = new ServerFactory(TwoRunningInProcess) { Gate = gate, Clock = clock };
        var (running, stopping) = await StopWithTwoRunningAndFourQueued(factory, gate, steps: 1000);

        // One tick before the drain time a step still runs: nothing is cut off early.
        clock.Advance(Drain - TimeSpan.FromTicks(1));
        int arrived = gate.Arrivals;
        gate.Allow();
        await factory.WaitFor(_ => gate.Arrivals > arrived, "a forward just before the end of the drain time");
        Assert.All(running, r => Assert.False(r.IsCompleted, "a running request was answered before the drain time was up"));

        clock.Advance(TimeSpan.FromTicks(1));
        gate.Allow(); // one step boundary: the worker reads the abort there, before another forward could be held
        foreach (var r in running)
        {
            var problem = await JobsTestClient.AssertProblem(await r.WaitAsync(TimeSpan.FromSeconds(30)), HttpStatusCode.ServiceUnavailable);
            Assert.Contains("before this request finished", problem.GetProperty("detail").GetString());
        }
        await stopping.WaitAsync(TimeSpan.FromMinutes(1));
    }

    /// <summary>The child server's settings: two running, the rest queued (as <see cref="TwoRunningInProcess"/>).</summary>
    private static Dictionary<string, string> TwoRunning() => TwoRunningInProcess.ToDictionary(s => s.Item1.Replace(":", "__"), s => s.Item2);

    private static string Explain(ShutdownUnderLoad.Report r, ChildServer server)
    {
        var log = File.Exists(server.LogPath) ? string.Join('\n', File.ReadLines(server.LogPath).TakeLast(30)) : "";
        return $"{r.Summary()}\n{string.Join('\n', r.Answers.Select(a => $"{(a.Late ? "late" : "sent")} {a.Kind}: {a.What}"))}\n{log}";
    }

    /// <remarks>Whether the running requests finish or are cut off depends on the machine's speed (1000 steps against a
    /// 5 s drain), so either counts: what is asserted is that each is answered through Kestrel, never dropped. The order
    /// of events is the in-process tests' part.</remarks>
    [Fact]
    public async Task Sigterm_with_requests_running_and_queued_answers_every_request_and_exits_0()
    {
        await using var server = await ChildServer.StartAsync(DemoModel, TwoRunning(), TimeSpan.FromMinutes(1));
        var r = await ShutdownUnderLoad.RunAsync(server, requests: 6, steps: 1000, running: 2, late: 3, exitTimeout: TimeSpan.FromSeconds(40));
        var why = Explain(r, server);
        Assert.True(!r.Violations.Any(), why);
        Assert.True(r.ExitCode == 0, why);
        Assert.True(r.Count(Kind.Finished) + r.Count(Kind.CutOff) == 2, why); // the running ones: 200, or 503 at the drain time
        Assert.True(r.Count(Kind.NotStarted) == 4, why);                       // the queued ones got their 503 instead of being run
        // A request after the signal meets the closed queue (503) or the closing listener, never a place in the batch.
        Assert.True(r.Answers.Where(a => a.Late).All(a => a.Kind is Kind.Refused or Kind.NotAccepted or Kind.NotStarted), why);
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
