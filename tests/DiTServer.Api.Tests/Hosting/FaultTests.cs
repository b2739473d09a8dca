using System.Net;
using System.Text;
using System.Text.Json;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.DependencyInjection;
using static TorchSharp.torch;

namespace DiTServer.Api.Tests;

/// <summary>Faults: one request's model failure (thrown: 500; NaN: 422) is its own while its batch mates finish; disconnecting
/// clients free their slots without leaking tensors; a burst over the queue's capacity gets only 200 or 503 + Retry-After.</summary>
public sealed class FaultTests
{
    private const long ThrowSeed = 666, NaNSeed = 667;

    /// <summary>Throws for one seed from its second step on and poisons another's output with NaN from its third step on:
    /// no request can end in the first forward, while the test holds the worker after it.</summary>
    private sealed class SeedFaults : IRunnerFaultInjector
    {
        public void OnForward(SamplingRun run, Tensor output)
        {
            if (run.Options.Seed == ThrowSeed && run.StepsDone >= 1) throw new InvalidOperationException("injected fault");
            if (run.Options.Seed == NaNSeed && run.StepsDone >= 2) output.fill_(double.NaN);
        }
    }

    private static Task<HttpResponseMessage> Post(HttpClient client, string body, CancellationToken ct = default) =>
        client.PostAsync("/v1/images", new StringContent(body, Encoding.UTF8, "application/json"), ct);

    private static string Body(long seed, int steps, int label = 1) =>
        $$"""{"class_label": {{label}}, "steps": {{steps}}, "cfg_scale": 4, "seed": {{seed}}}""";

    [Fact]
    public async Task A_failing_request_gets_500_a_non_finite_one_422_and_their_batch_mates_and_later_requests_succeed()
    {
        using var factory = new ServerFactory { ConfigureServices = s => s.AddSingleton<IRunnerFaultInjector, SeedFaults>(), Gate = new StepGate() };
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var seeds = new long[] { 1, ThrowSeed, 2, NaNSeed, 3 };
        // The worker is held after its first forward until all five are in, so they share the next forwards on any machine.
        var posts = seeds.Select(seed => Post(client, Body(seed, 8))).ToList();
        // Counted live in the scheduler: the engine's snapshot is published once per step, and the worker is held after
        // its first forward (before it hands that step's ended requests on), where no request can have ended yet.
        var scheduler = factory.Engine.Scheduler;
        await factory.WaitFor(_ => scheduler.Running().Count + scheduler.Count == seeds.Length, "all five accepted");
        factory.Gate!.Open();
        var responses = await Task.WhenAll(posts);
        Assert.True(factory.Engine.Snapshot().MaxRequestsInOneForward > 1, "the faulty requests were never batched with good ones");
        for (int i = 0; i < seeds.Length; i++)
        {
            var r = responses[i];
            var text = r.Content.Headers.ContentType?.MediaType == "image/png" ? "(png)" : await r.Content.ReadAsStringAsync();
            if (seeds[i] is ThrowSeed or NaNSeed)
            {
                // A thrown fault is the server's (500); a non-finite row is its settings' (422, naming them).
                var expected = seeds[i] == ThrowSeed ? HttpStatusCode.InternalServerError : HttpStatusCode.UnprocessableEntity;
                Assert.True(r.StatusCode == expected, $"seed {seeds[i]}: {(int)r.StatusCode} {text}");
                Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
                var detail = JsonDocument.Parse(text).RootElement.GetProperty("detail").GetString();
                Assert.Contains(seeds[i] == ThrowSeed ? "injected fault" : "NaN", detail);
                if (seeds[i] == NaNSeed) Assert.Contains($"steps 8, sampler unipc, spacing time_uniform, order 2, unipc_variant bh2, cfg_scale 4, " +
                    $"guidance official, seed {NaNSeed}", detail);
            }
            else Assert.True(r.StatusCode == HttpStatusCode.OK, $"seed {seeds[i]}: {(int)r.StatusCode} {text}");
        }
        // The worker goes on: a later request succeeds and the server is still ready.
        Assert.Equal(HttpStatusCode.OK, (await Post(client, Body(4, 3))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
        await factory.WaitFor(s => s.ActiveRequests == 0, "idle");
    }

    [Fact]
    public async Task Twenty_clients_disconnecting_mid_generation_free_their_slots_and_leak_no_tensors()
    {
        // 20 guided 1000-step requests: 16 fit the 32-row batch, 4 wait in the queue.
        // One test client stands for the twenty: its share of places must hold them all.
        using var factory = new ServerFactory(("Serving:MaxBatchRows", "32"), ("Serving:QueueCapacity", "32"), ("Serving:MaxQueuedRequestsPerClient", "32"));
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        // A first cancelled 1000-step request builds the respaced tables for 1000 steps (cached for good) before the baseline.
        await DisconnectWave(factory, client, 1, 100);
        long baseline = factory.Engine.Snapshot().WorkerLiveTensors;

        long inFlight = await DisconnectWave(factory, client, 20, 200);
        Assert.True(inFlight > baseline,
            $"the worker reported {inFlight} live tensors with 16 runs in flight (baseline {baseline}); the statistic is not wired");
        var after = factory.Engine.Snapshot();
        Assert.True(after.WorkerLiveTensors == baseline, $"live tensors on the worker: {baseline} before, {after.WorkerLiveTensors} after 20 disconnects");
        Assert.True(after.Forwards < 2000, $"cancelled requests ran on: {after}");
        // Slots are free: a short request goes straight through.
        Assert.Equal(HttpStatusCode.OK, (await Post(client, Body(5, 3))).StatusCode);
    }

    /// <summary>Starts <paramref name="count"/> long requests, cancels them all mid-generation, waits until every slot is free;
    /// returns the worker's live tensor count while they were running.</summary>
    private static async Task<long> DisconnectWave(ServerFactory factory, HttpClient client, int count, int seedBase)
    {
        var ctss = Enumerable.Range(0, count).Select(_ => new CancellationTokenSource()).ToList();
        var posts = ctss.Select((cts, i) => Post(client, Body(seedBase + i, 1000, i % 10), cts.Token)).ToList();
        int running = Math.Min(count, 16);
        long forwards = factory.Engine.Snapshot().Forwards;
        await factory.WaitFor(s => s.ActiveRequests == running && s.QueueDepth == count - running && s.Forwards > forwards + 3, $"{count} requests in flight",
            30);
        long inFlight = factory.Engine.Snapshot().WorkerLiveTensors;
        foreach (var cts in ctss) cts.Cancel();
        foreach (var post in posts) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => post);
        await factory.WaitFor(s => s.ActiveRequests == 0 && s.QueueDepth == 0 && s.ActiveRows == 0, "every slot freed", 20);
        foreach (var cts in ctss) cts.Dispose();
        return inFlight;
    }

    [Fact]
    public async Task A_burst_over_capacity_gets_only_200_or_503_with_retry_after_and_every_accepted_request_is_answered()
    {
        using var factory = new ServerFactory(("Serving:QueueCapacity", "4"), ("Serving:MaxBatchRows", "4"), ("Serving:MaxImagesPerRequest", "2"));
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var burst = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => Post(client, Body(i, 20, i % 10))))
            .WaitAsync(TimeSpan.FromSeconds(90));
        int ok = 0, refused = 0;
        foreach (var r in burst)
        {
            if (r.StatusCode == HttpStatusCode.OK) { ok++; Assert.Equal("image/png", r.Content.Headers.ContentType?.MediaType); continue; }
            Assert.True(r.StatusCode == HttpStatusCode.ServiceUnavailable, $"{(int)r.StatusCode}: {await r.Content.ReadAsStringAsync()}");
            Assert.True(r.Headers.RetryAfter?.Delta > TimeSpan.Zero, "503 without Retry-After");
            Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
            refused++;
        }
        Assert.True(ok >= 4 && refused > 0, $"{ok} ok, {refused} refused");
        await factory.WaitFor(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "idle");
        var metrics = await client.GetStringAsync("/metrics");
        Assert.Contains("dit_worker_live_tensors", metrics);
    }
}
