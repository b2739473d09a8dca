using System.Net;
using System.Text;
using System.Text.Json;
using DiTServer.Bench.Evidence;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.DependencyInjection;
using static TorchSharp.torch;

namespace DiTServer.Api.Tests;

/// <summary>The server's life outside a request: readiness before and after the warm-up (held, failed), a start that
/// cannot happen, and the JSON log format.</summary>
public sealed class LifecycleTests
{
    /// <summary>Holds the worker inside the warm-up's first forward until the test lets it go.</summary>
    private sealed class HeldWarmUp : IRunnerFaultInjector
    {
        public ManualResetEventSlim Go { get; } = new(false);
        public void OnForward(SamplingRun run, Tensor output) => Go.Wait(TimeSpan.FromMinutes(1));
    }

    /// <summary>Every forward gives NaN: the warm-up (and every request) produces no finite image.</summary>
    private sealed class NaNEverywhere : IRunnerFaultInjector
    {
        public void OnForward(SamplingRun run, Tensor output) => output.fill_(double.NaN);
    }

    [Fact]
    public async Task Readiness_is_503_until_the_warm_up_has_finished_while_liveness_is_200()
    {
        var held = new HeldWarmUp();
        using var factory = new ServerFactory { ConfigureServices = s => s.AddSingleton<IRunnerFaultInjector>(held) };
        var client = factory.CreateClient();
        try
        {
            foreach (var path in new[] { "/health/ready", "/v2/health/ready" })
                Assert.Equal(HttpStatusCode.ServiceUnavailable, (await client.GetAsync(path)).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
            Assert.False(factory.Engine.Snapshot().Ready);
        }
        finally { held.Go.Set(); }
        await factory.WaitFor(s => s.Ready, "warm-up");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
    }

    [Fact]
    public async Task Readiness_stays_503_after_a_warm_up_that_gave_no_finite_image()
    {
        using var factory = new ServerFactory { ConfigureServices = s => s.AddSingleton<IRunnerFaultInjector, NaNEverywhere>() };
        var client = factory.CreateClient();
        // A request is answered only after the warm-up (the worker does one thing at a time), so readiness is final then.
        var response = await client.PostAsync("/v1/images", new StringContent("""{"class_label": 1, "steps": 2}""", Encoding.UTF8, "application/json"));
        // Non-finite sampling is the request's 422 (issue 19); that every request gets it shows in readiness, not in the status.
        Assert.Equal(HttpStatusCode.UnprocessableEntity, response.StatusCode);
        var ready = await client.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.False(factory.Engine.Snapshot().Ready);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/live")).StatusCode);
    }

    [Fact]
    public async Task A_server_that_cannot_start_exits_1_with_one_fatal_line_naming_the_cause()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"dit-missing-{Guid.NewGuid():N}");
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => ChildServer.StartAsync(missing, new Dictionary<string, string>(),
            TimeSpan.FromMinutes(1)));
        Assert.Contains("exited with 1 at start", e.Message);
        var log = e.Message[(e.Message.LastIndexOf("see ", StringComparison.Ordinal) + 4)..];
        var lines = File.ReadAllLines(log).Where(l => l.Length > 0).ToList();
        var fatal = Assert.Single(lines, l => l.Contains("FTL"));
        Assert.Contains($"DiT:Model '{missing}' does not exist", fatal);
        Assert.DoesNotContain(lines, l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal)); // no stack trace
        File.Delete(log);
    }

    [Fact]
    public async Task Logs_format_json_writes_one_object_per_line_with_the_request_id()
    {
        var settings = new Dictionary<string, string> { ["Logs__Format"] = "json", ["Serilog__MinimumLevel__Default"] = "Information" };
        string log;
        string requestId;
        await using (var server = await ChildServer.StartAsync(TestPaths.TinyModel, settings, TimeSpan.FromMinutes(1)))
        {
            log = server.LogPath;
            var response = await server.Client.PostAsync("/v1/images", new StringContent("""{"class_label": 1, "steps": 2}""", Encoding.UTF8,
                "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            requestId = response.Headers.GetValues("X-Request-Id").Single();
        }
        var lines = File.ReadAllLines(log).Where(l => l.Length > 0).ToList();
        Assert.NotEmpty(lines);
        var events = lines.Select(l => JsonDocument.Parse(l).RootElement).ToList(); // each line is one JSON object
        Assert.All(events, e =>
        {
            Assert.Equal(JsonValueKind.Object, e.ValueKind);
            Assert.True(e.TryGetProperty("@t", out _) && e.TryGetProperty("@m", out _), e.ToString());
        });
        Assert.Contains(events, e => e.TryGetProperty("RequestId", out var id) && id.GetString() == requestId
            && e.GetProperty("@m").GetString()!.StartsWith("Finished", StringComparison.Ordinal));
        File.Delete(log);
    }
}
