using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;

namespace DiTServer.Api.Tests;

/// <summary>Back-pressure and cancellation: a full queue answers 503 at once; a disconnected client's rows leave the batch.</summary>
public sealed class QueueTests
{
    // One queue place, and a batch that holds exactly one guided image: a long request blocks the worker's batch. The
    // worker is held after every forward until the test allows the next (StepGate), so a 1000-step request is still
    // running whenever the test says so, however fast or slow the machine.
    private static ServerFactory Tight() => new(("Serving:QueueCapacity", "1"), ("Serving:MaxBatchRows", "2"), ("Serving:MaxImagesPerRequest", "1"))
    {
        Gate = new StepGate(),
    };

    private const string Long = """{"class_label": 1, "steps": 1000, "cfg_scale": 4, "seed": 1}""";

    private static Task<HttpResponseMessage> Post(HttpClient client, string body, CancellationToken ct = default) =>
        client.PostAsync("/v1/images", new StringContent(body, Encoding.UTF8, "application/json"), ct);

    [Fact]
    public async Task Full_queue_answers_503_with_retry_after_at_once_and_a_disconnect_frees_the_slot()
    {
        using var factory = Tight();
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        using var ctsA = new CancellationTokenSource();
        using var ctsB = new CancellationTokenSource();
        var a = Post(client, Long, ctsA.Token);
        await factory.WaitFor(s => s.ActiveRequests == 1, "A running");
        var b = Post(client, Long, ctsB.Token);
        await factory.WaitFor(s => s.QueueDepth == 1, "B queued");

        var c = await Post(client, """{"class_label": 2, "steps": 2}""");
        // The refusal did not wait for the worker: the worker is held within A's first step and B still waits.
        Assert.False(a.IsCompleted, "the refusal came only after A finished");
        Assert.Equal(1, factory.Engine.Snapshot().QueueDepth);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, c.StatusCode);
        Assert.Equal("application/problem+json", c.Content.Headers.ContentType?.MediaType);
        Assert.True(c.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After is missing");
        Assert.Contains("queue", JsonDocument.Parse(await c.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString());

        // A's client goes away: its rows leave at the next step, B is admitted, and the queue place is free again. (A's
        // call ends once the worker has let A go, so it is awaited after the step.)
        ctsA.Cancel();
        await factory.StepUntil(s => s.ActiveRequests == 1 && s.QueueDepth == 0, "B admitted after A left");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a);
        using var ctsD = new CancellationTokenSource();
        var d = Post(client, Long, ctsD.Token);
        await factory.WaitFor(s => s.QueueDepth == 1, "D accepted into the freed place", 10);
        Assert.False(d.IsCompleted);

        ctsB.Cancel();
        ctsD.Cancel();
        await factory.StepUntil(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "everything cancelled");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => b);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => d);
        // Every forward needed a permit, and StepUntil gives at most 20 each time: nobody ran its 1000 steps.
        Assert.True(factory.Engine.Snapshot().Forwards <= 40, $"more forwards than were allowed: {factory.Engine.Snapshot()}");
    }

    [Fact]
    public async Task A_queued_client_that_disconnects_frees_its_place_at_once_not_when_the_worker_reaches_it()
    {
        // Two queue places; A fills the batch, B waits at the head (it cannot be admitted while A runs), C waits behind B.
        // The worker is held within A's first step for the whole test: nothing the queue does can wait for it.
        using var factory = new ServerFactory(("Serving:QueueCapacity", "2"), ("Serving:MaxBatchRows", "2"), ("Serving:MaxImagesPerRequest", "1"))
        {
            Gate = new StepGate(),
        };
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var ctss = Enumerable.Range(0, 4).Select(_ => new CancellationTokenSource()).ToList();
        var a = Post(client, Long, ctss[0].Token);
        await factory.WaitFor(s => s.ActiveRequests == 1, "A running");
        var b = Post(client, Long, ctss[1].Token);
        await factory.WaitFor(s => s.QueueDepth == 1, "B queued");
        var c = Post(client, Long, ctss[2].Token);
        await factory.WaitFor(s => s.QueueDepth == 2, "C queued");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await Post(client, """{"class_label": 2, "steps": 2}""")).StatusCode);

        // C's client leaves while B still waits in front of it: C's place must be free now, not once B is admitted.
        long forwards = factory.Engine.Snapshot().Forwards;
        ctss[2].Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => c);
        await factory.WaitFor(s => s.QueueDepth == 1, "C's place freed", 5);
        var d = Post(client, Long, ctss[3].Token);
        await factory.WaitFor(s => s.QueueDepth == 2, "D accepted into C's place", 5);
        Assert.False(d.IsCompleted, "D was refused or answered although C's place was free");
        var s = factory.Engine.Snapshot();
        Assert.True(s.ActiveRequests == 1 && s.Forwards == forwards, $"the worker moved, so the place may have been freed by it: {s}");

        foreach (var cts in ctss) cts.Cancel();
        await factory.StepUntil(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "everything cancelled");
        foreach (var post in new[] { a, b, d }) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => post);
        foreach (var cts in ctss) cts.Dispose();
    }

    [Fact]
    public async Task Cancelled_request_leaves_the_batch_before_finishing()
    {
        using var factory = Tight();
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        using var cts = new CancellationTokenSource();
        var a = Post(client, Long, cts.Token);
        await factory.WaitFor(s => s.ActiveRequests == 1, "A running");
        factory.Gate!.Allow(5);
        await factory.WaitFor(s => s.Forwards == 5, "A's first steps");
        cts.Cancel();
        await factory.StepUntil(s => s.ActiveRequests == 0, "A removed");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a);
        long forwards = factory.Engine.Snapshot().Forwards;
        Assert.True(forwards <= 25, $"ran {forwards} forwards, more than were allowed");
        // The server is free again: a short request goes straight through.
        factory.Gate.Open();
        var ok = await Post(client, """{"class_label": 2, "steps": 3}""");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task A_request_whose_time_runs_out_in_the_queue_answers_504_and_never_runs()
    {
        using var factory = new ServerFactory(("Serving:QueueCapacity", "1"), ("Serving:MaxBatchRows", "2"), ("Serving:MaxImagesPerRequest", "1"),
            ("Serving:RequestTimeout", "00:00:01"))
        {
            Gate = new StepGate(),
            Clock = new FakeTimeProvider(),
        };
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var a = Post(client, Long);
        await factory.WaitFor(s => s.ActiveRequests == 1, "A running");
        var b = Post(client, """{"class_label": 2, "steps": 2, "cfg_scale": 4}""");
        await factory.WaitFor(s => s.QueueDepth == 1, "B queued behind A");
        factory.Clock!.Advance(TimeSpan.FromSeconds(2)); // past both deadlines, with the worker held within A's first step
        await factory.StepUntil(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "both timed out");

        var queued = await b;
        Assert.Equal(HttpStatusCode.GatewayTimeout, queued.StatusCode);
        Assert.Contains("waited in the queue longer than Serving:RequestTimeout",
            JsonDocument.Parse(await queued.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString());
        var running = await a;
        Assert.Equal(HttpStatusCode.GatewayTimeout, running.StatusCode);
        Assert.Contains("did not finish within", JsonDocument.Parse(await running.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Request_batching_mode_admits_only_into_an_empty_batch()
    {
        // Serving:Batching=request (the comparison mode of bench load): a batch is formed when none runs, and nothing joins
        // it until all of it is done. A runs alone; B and C, arriving during A's first step, wait for A's end and then run
        // together: 3 + 3 forwards, at most 2 requests in one. (Step batching: B and C join A at its second step, 4 forwards.)
        using var factory = new ServerFactory(("Serving:Batching", "request")) { Gate = new StepGate() };
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        string Body(int i) => $$"""{"class_label": {{i}}, "steps": 3, "seed": {{i}}}""";
        var a = Post(client, Body(0));
        await factory.WaitFor(s => s.ActiveRequests == 1, "A running");
        var others = new[] { Post(client, Body(1)), Post(client, Body(2)) };
        await factory.WaitFor(s => s.QueueDepth == 2, "B and C queued");
        factory.Gate!.Open();
        foreach (var response in await Task.WhenAll([a, .. others])) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var s = factory.Engine.Snapshot();
        Assert.True(s.MaxRequestsInOneForward == 2 && s.Forwards == 6, s.ToString());
    }

    [Fact]
    public async Task Request_timeout_answers_504_problem()
    {
        // The server's clock is the test's: the request is running (held within its first step) when its time runs out.
        using var factory = new ServerFactory(("Serving:RequestTimeout", "00:00:01")) { Gate = new StepGate(), Clock = new FakeTimeProvider() };
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images")
        {
            Content = new StringContent("""{"class_label": 1, "num_images": 8, "steps": 1000, "cfg_scale": 4}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var answer = client.SendAsync(request);
        await factory.WaitFor(s => s.ActiveRequests == 1, "the request running");
        factory.Clock!.Advance(TimeSpan.FromMilliseconds(999));
        await factory.StepUntil(s => s.Forwards >= 3, "three steps within the timeout");
        Assert.False(answer.IsCompleted);
        factory.Clock.Advance(TimeSpan.FromMilliseconds(2));
        await factory.StepUntil(s => s.ActiveRequests == 0, "the timed-out request removed");
        var response = await answer;
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Contains("RequestTimeout", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString());
    }
}
