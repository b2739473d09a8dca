using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.DependencyInjection;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>Request metrics cover every generation route with route and model labels (before: only POST /v1/images),
/// the exposition passes <c>promtool check metrics</c> without the runtime's private families, and the KServe v2
/// metadata and readiness routes answer.</summary>
public sealed class MetricsAndKServeTests(MetricsAndKServeTests.Server server) : IClassFixture<MetricsAndKServeTests.Server>
{
    public sealed class Server() : ServerFixture(new(("Serving:MaxBatchRows", "16")));

    private readonly HttpClient client = server.Factory.CreateClient();

    private async Task<string> ModelName() =>
        JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0].GetProperty("name").GetString()!;

    [Theory]
    [InlineData("/v1/images", """{"class_label": 1, "steps": 3}""")]
    [InlineData("/v1/jobs", """{"class_label": 1, "steps": 3}""")]
    [InlineData("/v1/images/generations", """{"prompt": "1", "steps": 3}""")]
    public async Task Every_generation_route_counts_ok_and_refusals_with_route_and_model(string route, string body)
    {
        var model = await ModelName();
        string ok = $"dit_requests_total{{route=\"{route}\",model=\"{model}\",outcome=\"ok\",tenant=\"anonymous\"}}";
        string bad = $"dit_requests_total{{route=\"{route}\",model=\"{model}\",outcome=\"bad_request\",tenant=\"anonymous\"}}";
        string timed = $"dit_request_duration_seconds_count{{route=\"{route}\",model=\"{model}\"}}";
        var before = await client.GetStringAsync("/metrics");

        var response = await client.PostAsync(route, Json(body));
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        Assert.False((await client.PostAsync(route, Json("""{"steps": 0}"""))).IsSuccessStatusCode);

        // A job finishes after its 202, and the count follows the engine's completion: wait for it.
        var after = await Eventually(async () => await client.GetStringAsync("/metrics"), m => Value(m, ok) == Value(before, ok) + 1);
        Assert.Equal(Value(before, ok) + 1, Value(after, ok));
        Assert.Equal(Value(before, timed) + 1, Value(after, timed));
        Assert.Equal(Value(before, bad) + 1, Value(after, bad));
    }

    [Fact]
    public async Task Refusals_are_counted_by_their_reason_not_by_status_or_title()
    {
        // Two clients by bearer key, one place each, two in all: the worker is held after the first request's first
        // forward, so what waits stays waiting while the test sends the rest.
        using var factory = new ServerFactory(("Serving:QueueCapacity", "2"), ("Serving:MaxQueuedRequestsPerClient", "1"),
            ("Serving:MaxBatchRows", "2"), ("Serving:MaxRunningRows", "2"), ("Serving:MaxImagesPerRequest", "1"), ("Clients:ApiKeys:a", "key-a"), ("Clients:ApiKeys:b", "key-b")) { Gate = new StepGate() };
        await factory.WaitFor(s => s.Ready, "warm-up");
        var scheduler = factory.Engine.Scheduler;
        HttpClient As(string key)
        {
            var c = factory.CreateClient();
            c.DefaultRequestHeaders.Authorization = new("Bearer", key);
            return c;
        }
        var (a, b) = (As("key-a"), As("key-b"));
        var model = JsonDocument.Parse(await a.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0].GetProperty("name").GetString()!;
        string Series(string outcome) => $"dit_requests_total{{route=\"/v1/images\",model=\"{model}\",outcome=\"{outcome}\",tenant=\"anonymous\"}}";
        var before = await a.GetStringAsync("/metrics");
        const string body = """{"class_label": 1, "steps": 3}""";

        var running = a.PostAsync("/v1/images", Json(body));
        await factory.WaitFor(_ => scheduler.Running().Count == 1, "the first request running");
        var queuedA = a.PostAsync("/v1/images", Json(body));
        await factory.WaitFor(_ => scheduler.Count == 1, "a's second request waiting");
        var overShare = await a.PostAsync("/v1/images", Json(body));
        var queuedB = b.PostAsync("/v1/images", Json(body));
        await factory.WaitFor(_ => scheduler.Count == 2, "b's request waiting");
        var full = await b.PostAsync("/v1/images", Json(body));
        Assert.Equal(HttpStatusCode.TooManyRequests, overShare.StatusCode);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, full.StatusCode);

        factory.Gate!.Open();
        foreach (var r in await Task.WhenAll(running, queuedA, queuedB)) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var after = await a.GetStringAsync("/metrics");
        Assert.Equal(Value(before, Series("client_limit")) + 1, Value(after, Series("client_limit")));
        Assert.Equal(Value(before, Series("queue_full")) + 1, Value(after, Series("queue_full")));
        Assert.Equal(Value(before, Series("shutting_down")), Value(after, Series("shutting_down")));
    }

    [Fact]
    public async Task No_private_runtime_families_are_exported()
    {
        await client.GetStringAsync("/v1/models");
        var metrics = await client.GetStringAsync("/metrics");
        Assert.DoesNotContain("private_internaldiagnostics", metrics);
        Assert.Contains("dit_queue_depth", metrics);
        // TestServer never loads msquic, so the meter that produced them on Kestrel is checked by name too.
        Assert.False(DiTServer.Api.Observability.ObservabilityRegistration.IsExportedMeter("Private.InternalDiagnostics.System.Net.Quic"));
        Assert.True(DiTServer.Api.Observability.ObservabilityRegistration.IsExportedMeter("Microsoft.AspNetCore.Hosting"));
    }

    [PromtoolFact]
    public async Task Exposition_passes_promtool_check_metrics()
    {
        await client.PostAsync("/v1/images", Json("""{"class_label": 1, "steps": 2}"""));
        var metrics = await client.GetStringAsync("/metrics");
        var (code, output) = await Promtool.Run(["check", "metrics"], metrics);
        Assert.True(code == 0 && output.Trim().Length == 0, $"promtool check metrics exited {code}:\n{output}");
    }

    [Fact]
    public async Task KServe_v2_server_model_metadata_and_readiness()
    {
        var model = await ModelName();
        await server.Factory.WaitFor(s => s.Ready, "warm-up");
        var meta = JsonDocument.Parse(await client.GetStringAsync("/v2")).RootElement;
        Assert.Equal("ditserver", meta.GetProperty("name").GetString());
        Assert.False(string.IsNullOrEmpty(meta.GetProperty("version").GetString()));
        var m = JsonDocument.Parse(await client.GetStringAsync($"/v2/models/{model}")).RootElement;
        Assert.Equal(model, m.GetProperty("name").GetString());
        Assert.Equal("class_label", m.GetProperty("inputs")[0].GetProperty("name").GetString());
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v2/models/{model}/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v2/models/other/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v2/models/other")).StatusCode);
    }

    [Fact]
    public async Task KServe_model_ready_is_400_until_warm_up_finishes()
    {
        // The warm-up generation is held inside its first forward: the server is loaded but not ready, and both
        // readiness routes must say so (KServe's "not ready" is 400); once the warm-up is let go, both turn ready.
        var warmUp = new HeldForwards();
        using var cold = new ServerFactory { ConfigureServices = s => s.AddSingleton<IRunnerFaultInjector>(warmUp) };
        var c = cold.CreateClient();
        try
        {
            var model = JsonDocument.Parse(await c.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0].GetProperty("name").GetString();
            Assert.True(warmUp.Entered.Wait(TimeSpan.FromSeconds(60)), "the warm-up never reached its first forward");
            Assert.False(cold.Engine.Ready);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await c.GetAsync("/health/ready")).StatusCode);
            Assert.Equal(HttpStatusCode.BadRequest, (await c.GetAsync($"/v2/models/{model}/ready")).StatusCode);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await c.GetAsync("/v2/health/ready")).StatusCode);

            warmUp.Release.Set();
            await cold.WaitFor(s => s.Ready, "warm-up");
            Assert.Equal(HttpStatusCode.OK, (await c.GetAsync("/health/ready")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await c.GetAsync($"/v2/models/{model}/ready")).StatusCode);
        }
        finally
        {
            warmUp.Release.Set(); // a held worker would hold the host's shutdown
        }
    }

    /// <summary>Holds the worker inside a forward until <see cref="Release"/> is set: the warm-up, the first thing the
    /// worker runs, cannot finish before the test lets it, on any machine.</summary>
    private sealed class HeldForwards : IRunnerFaultInjector
    {
        public ManualResetEventSlim Entered { get; } = new();
        public ManualResetEventSlim Release { get; } = new();

        public void OnForward(SamplingRun run, TorchSharp.torch.Tensor output)
        {
            Entered.Set();
            Release.Wait();
        }
    }

    private static async Task<string> Eventually(Func<Task<string>> read, Func<string, bool> done, double seconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var value = await read();
            if (done(value) || DateTime.UtcNow > deadline) return value;
            await Task.Delay(20);
        }
    }

    private static double Value(string exposition, string series)
    {
        var m = Regex.Match(exposition, "^" + Regex.Escape(series) + @" (\S+)$", RegexOptions.Multiline);
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
    }
}

/// <summary>Skips, saying why, when Debian's promtool (package prometheus) is missing; .ci/run installs it.</summary>
public sealed class PromtoolFactAttribute : FactAttribute
{
    public PromtoolFactAttribute()
    {
        if (Promtool.Path is null) Skip = "promtool is missing: apt-get install -y prometheus (.ci/run does)";
    }
}

internal static class Promtool
{
    public static string? Path { get; } = new[] { "/usr/bin/promtool", "/usr/local/bin/promtool" }.FirstOrDefault(File.Exists);

    public static async Task<(int Code, string Output)> Run(string[] args, string? stdin = null, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(Path ?? "promtool") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (workingDirectory is not null) psi.WorkingDirectory = workingDirectory;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null) await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stdout + await stderr);
    }
}
