using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace DiTServer.Api.Tests;

/// <summary>Back-pressure and cancellation: a full queue answers 503 at once; a disconnected client's rows leave the batch.</summary>
public sealed class QueueTests
{
    // One queue place, and a batch that holds exactly one guided image: a long request blocks the worker's batch.
    // A 2 ms pause after each forward keeps a 1000-step request running for seconds on any machine.
    private static ServerFactory Tight() => new(("Serving:QueueCapacity", "1"), ("Serving:MaxBatchRows", "2"), ("Serving:MaxImagesPerRequest", "1"))
    {
        StepDelay = TimeSpan.FromMilliseconds(2),
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
        // The refusal did not wait for the worker: A (1000 steps) still runs and B still waits, on any machine.
        Assert.False(a.IsCompleted, "the refusal came only after A finished");
        Assert.Equal(1, factory.Engine.Snapshot().QueueDepth);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, c.StatusCode);
        Assert.Equal("application/problem+json", c.Content.Headers.ContentType?.MediaType);
        Assert.True(c.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After is missing");
        Assert.Contains("queue", JsonDocument.Parse(await c.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString());

        // A's client goes away: its rows leave at the next step, B is admitted, and the queue place is free again.
        ctsA.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a);
        await factory.WaitFor(s => s.ActiveRequests == 1 && s.QueueDepth == 0, "B admitted after A left", 10);
        using var ctsD = new CancellationTokenSource();
        var d = Post(client, Long, ctsD.Token);
        await factory.WaitFor(s => s.QueueDepth == 1, "D accepted into the freed place", 10);
        Assert.False(d.IsCompleted);

        ctsB.Cancel();
        ctsD.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => b);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => d);
        await factory.WaitFor(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "everything cancelled", 10);
        // Warm-up takes 2 forwards; a finished 1000-step request would have taken 1000 more.
        Assert.True(factory.Engine.Snapshot().Forwards < 1000, $"a cancelled request ran to the end: {factory.Engine.Snapshot()}");
    }

    [Fact]
    public async Task A_queued_client_that_disconnects_frees_its_place_at_once_not_when_the_worker_reaches_it()
    {
        // Two queue places; A fills the batch, B waits at the head (it cannot be admitted while A runs), C waits behind B.
        // 5 ms per step: A's 1000 steps outlast the test on any machine.
        using var factory = new ServerFactory(("Serving:QueueCapacity", "2"), ("Serving:MaxBatchRows", "2"), ("Serving:MaxImagesPerRequest", "1"))
        {
            StepDelay = TimeSpan.FromMilliseconds(5),
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
        Assert.True(s.ActiveRequests == 1 && s.Forwards < forwards + 900, $"A was no longer running, so B did not block C's place: {s}");

        foreach (var cts in ctss) cts.Cancel();
        foreach (var post in new[] { a, b, d }) await Assert.ThrowsAnyAsync<OperationCanceledException>(() => post);
        await factory.WaitFor(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "everything cancelled", 10);
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
        await factory.WaitFor(s => s.ActiveRequests == 1 && s.Forwards > 5, "A running");
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a);
        await factory.WaitFor(s => s.ActiveRequests == 0, "A removed", 10);
        long forwards = factory.Engine.Snapshot().Forwards;
        Assert.True(forwards < 1000, $"ran {forwards} forwards");
        // The server is free again: a short request goes straight through.
        var ok = await Post(client, """{"class_label": 2, "steps": 3}""");
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task Request_timeout_answers_504_problem()
    {
        using var factory = new ServerFactory(("Serving:RequestTimeout", "00:00:01"));
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images")
        {
            Content = new StringContent("""{"class_label": 1, "num_images": 8, "steps": 1000, "cfg_scale": 4}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Contains("RequestTimeout", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString());
        await factory.WaitFor(s => s.ActiveRequests == 0, "timed-out request removed", 5);
    }
}
