using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>A real redis-server on loopback, started for these tests (CI installs Debian's redis-server).</summary>
public sealed class RedisServer : IDisposable
{
    private readonly Process process;

    public RedisServer()
    {
        const string binary = "/usr/bin/redis-server";
        if (!File.Exists(binary))
            throw new InvalidOperationException($"{binary} not found: apt-get install redis-server (.ci/run installs it)");
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            Port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        process = Process.Start(new ProcessStartInfo(binary, ["--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, Port);
                break;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline && !process.HasExited) { Thread.Sleep(50); }
        }
    }

    public int Port { get; }
    public string Configuration => $"127.0.0.1:{Port}";

    public void Dispose()
    {
        if (!process.HasExited) process.Kill();
        process.WaitForExit(5000);
        process.Dispose();
    }
}

/// <summary>Two replicas sharing jobs through Redis (<c>SharedStore:Redis</c>): a job created on one is read, followed,
/// fetched, cancelled and forgotten through the other, with the same answers as on its owner.</summary>
public sealed class SharedJobStoreTests(RedisServer redis) : IClassFixture<RedisServer>
{
    /// <summary>A replica on the shared Redis; each test has its own key prefix, as two deployments would.</summary>
    private ServerFactory Replica(string prefix, TimeSpan stepDelay = default) =>
        new(("SharedStore:Redis", redis.Configuration), ("SharedStore:KeyPrefix", prefix), ("Serving:MaxBatchRows", "16"))
        {
            StepDelay = stepDelay,
        };

    private static string Prefix() => $"t{Guid.NewGuid():N}:";

    private static async Task<(HttpClient A, HttpClient B)> Ready(ServerFactory a, ServerFactory b)
    {
        var ca = a.CreateClient();
        var cb = b.CreateClient();
        await a.WaitFor(s => s.Ready, "replica A warm-up");
        await b.WaitFor(s => s.Ready, "replica B warm-up");
        return (ca, cb);
    }

    private static async Task<HttpResponseMessage> GetJson(HttpClient client, string path)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        return await client.SendAsync(request);
    }

    [Fact]
    public async Task A_job_made_on_one_replica_is_followed_fetched_and_forgotten_through_another()
    {
        var prefix = Prefix();
        using var fa = Replica(prefix);
        using var fb = Replica(prefix);
        var (a, b) = await Ready(fa, fb);

        var (id, _, _) = await a.CreateJob("""{"class_label": 3, "num_images": 2, "steps": 4, "cfg_scale": 4, "seed": 5}""");
        var done = await b.WaitForJob(id, j => j.GetProperty("state").GetString() == "succeeded", "succeeded, seen from B");
        var owners = await a.GetStringAsync($"/v1/jobs/{id}");
        Assert.True(System.Text.Json.Nodes.JsonNode.DeepEquals(System.Text.Json.Nodes.JsonNode.Parse(owners),
            System.Text.Json.Nodes.JsonNode.Parse(done.GetRawText())),
            $"owner: {owners}\nother replica: {done.GetRawText()}");

        // The event stream through B ends with the same final event the owner sends.
        var events = await b.GetStringAsync($"/v1/jobs/{id}/events");
        Assert.Contains("event: done", events);

        // PNG (the grid and each image) and JSON: the owner's bytes, with the same headers.
        foreach (var path in new[] { $"/v1/jobs/{id}/result", $"/v1/jobs/{id}/result?index=1" })
        {
            var fromA = await a.GetAsync(path);
            var fromB = await b.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, fromB.StatusCode);
            Assert.Equal("image/png", fromB.Content.Headers.ContentType?.MediaType);
            Assert.Equal(await fromA.Content.ReadAsByteArrayAsync(), await fromB.Content.ReadAsByteArrayAsync());
            Assert.Equal(fromA.Headers.GetValues("X-Seed"), fromB.Headers.GetValues("X-Seed"));
            Assert.Equal(fromA.Headers.GetValues("X-Class-Label"), fromB.Headers.GetValues("X-Class-Label"));
        }
        Assert.Equal(await (await GetJson(a, $"/v1/jobs/{id}/result")).Content.ReadAsStringAsync(),
            await (await GetJson(b, $"/v1/jobs/{id}/result")).Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.BadRequest, (await b.GetAsync($"/v1/jobs/{id}/result?index=2")).StatusCode);

        // DELETE through B forgets it everywhere, the owner's own copy included.
        Assert.Equal(HttpStatusCode.NoContent, (await b.DeleteAsync($"/v1/jobs/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await b.GetAsync($"/v1/jobs/{id}")).StatusCode);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await a.GetAsync($"/v1/jobs/{id}")).StatusCode != HttpStatusCode.NotFound)
        {
            Assert.True(DateTime.UtcNow < deadline, "the owner kept a job that was deleted through another replica");
            await Task.Delay(20);
        }
        Assert.Equal(HttpStatusCode.NotFound, (await b.GetAsync("/v1/jobs/job_00000000000000000000000000000000")).StatusCode);
    }

    [Fact]
    public async Task Delete_through_another_replica_cancels_a_running_job_on_its_owner()
    {
        var prefix = Prefix();
        using var fa = Replica(prefix, TimeSpan.FromMilliseconds(10));
        using var fb = Replica(prefix);
        var (a, b) = await Ready(fa, fb);

        var (id, _, _) = await a.CreateJob("""{"class_label": 1, "steps": 1000, "cfg_scale": 4, "seed": 1}""");
        await b.WaitForJob(id, j => j.GetProperty("state").GetString() == "running", "running, seen from B");
        var result = await b.GetAsync($"/v1/jobs/{id}/result");
        Assert.Equal(HttpStatusCode.Conflict, result.StatusCode);
        Assert.Contains("is running", await result.Content.ReadAsStringAsync());

        var deleted = await b.DeleteAsync($"/v1/jobs/{id}");
        Assert.Equal(HttpStatusCode.Accepted, deleted.StatusCode);
        Assert.Equal("cancelled", JsonDocument.Parse(await deleted.Content.ReadAsStringAsync()).RootElement.GetProperty("state").GetString());
        Assert.Equal("cancelled", (await a.GetJob(id)).GetProperty("state").GetString());
        await fa.WaitFor(s => s.ActiveRequests == 0, "the cancelled job's rows left A's batch");
        var job = await a.GetJob(id);
        Assert.True(job.GetProperty("step").GetInt32() < 1000, $"the job ran on after its cancellation: {job}");
    }

    [Fact]
    public async Task An_openai_url_answer_of_one_replica_is_served_by_another()
    {
        var prefix = Prefix();
        using var fa = Replica(prefix);
        using var fb = Replica(prefix);
        var (a, b) = await Ready(fa, fb);

        var response = await a.PostAsync("/v1/images/generations", Json("""{"prompt": 4, "n": 1, "response_format": "url", "seed": 9, "steps": 3}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var url = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("data")[0].GetProperty("url").GetString()!;
        var fromB = await b.GetAsync(url);
        Assert.Equal(HttpStatusCode.OK, fromB.StatusCode);
        Assert.Equal(await a.GetByteArrayAsync(url), await fromB.Content.ReadAsByteArrayAsync());
    }

    /// <summary>A 503 problem+json with Retry-After, the answer of the job routes while the store is unreachable.</summary>
    private static async Task AssertStoreUnavailable(HttpResponseMessage response, string what)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{what}: {(int)response.StatusCode} {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.NotNull(response.Headers.RetryAfter);
        Assert.Contains("SharedStore:Redis", JsonDocument.Parse(text).RootElement.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task With_redis_unreachable_from_the_start_job_routes_answer_503_and_images_still_work()
    {
        // A closed port: every store call fails, as when Redis is down.
        int closed;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            closed = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        using var factory = new ServerFactory(("SharedStore:Redis", $"127.0.0.1:{closed}"), ("SharedStore:TimeoutMs", "300"));
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        await AssertStoreUnavailable(await client.PostAsync("/v1/jobs", Json("""{"class_label": 2, "steps": 2}""")), "POST /v1/jobs");
        Assert.Equal(0, factory.Engine.Snapshot().QueueDepth + factory.Engine.Snapshot().ActiveRequests); // no job was made
        await AssertStoreUnavailable(await client.GetAsync("/v1/jobs/job_00000000000000000000000000000000"), "GET unknown id");
        await AssertStoreUnavailable(await client.GetAsync("/v1/jobs/job_00000000000000000000000000000000/result"), "GET unknown result");
        // Generation that needs no store goes on.
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/images", Json("""{"class_label": 2, "steps": 2}"""))).StatusCode);
    }

    [Fact]
    public async Task When_redis_dies_job_routes_answer_503_fast_and_the_owner_still_serves_its_jobs()
    {
        var own = new RedisServer();
        bool killed = false;
        try
        {
            using var factory = new ServerFactory(("SharedStore:Redis", own.Configuration), ("SharedStore:KeyPrefix", Prefix()),
                ("SharedStore:TimeoutMs", "500"));
            var client = factory.CreateClient();
            await factory.WaitFor(s => s.Ready, "warm-up");
            var (id, _, _) = await client.CreateJob("""{"class_label": 2, "num_images": 2, "steps": 2}""");
            await client.WaitForJob(id, j => j.GetProperty("state").GetString() == "succeeded", "succeeded while Redis is up");

            own.Dispose(); // SIGKILL
            killed = true;
            // Each call returns (no 5 s wait in a backlog) with 503, not the 404 that made an outage look like "no such job".
            await AssertStoreUnavailable(await client.GetAsync("/v1/jobs/job_00000000000000000000000000000000"), "GET unknown id");
            await AssertStoreUnavailable(await client.GetAsync("/v1/jobs/job_00000000000000000000000000000000/events"), "events of unknown id");
            await AssertStoreUnavailable(await client.DeleteAsync("/v1/jobs/job_00000000000000000000000000000000"), "DELETE unknown id");
            await AssertStoreUnavailable(await client.PostAsync("/v1/jobs", Json("""{"class_label": 2, "steps": 2}""")), "POST /v1/jobs");
            var openai = await client.PostAsync("/v1/images/generations", Json("""{"prompt": 2, "steps": 2, "response_format": "url"}"""));
            var openaiText = await openai.Content.ReadAsStringAsync();
            Assert.True(openai.StatusCode == HttpStatusCode.ServiceUnavailable, $"OpenAI url answer: {(int)openai.StatusCode} {openaiText}");
            Assert.Contains("SharedStore:Redis", JsonDocument.Parse(openaiText).RootElement.GetProperty("error").GetProperty("message").GetString());
            // The owner still serves the job it holds.
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/jobs/{id}")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/jobs/{id}/result")).StatusCode);
        }
        finally
        {
            if (!killed) own.Dispose();
        }
    }

    [Fact]
    public async Task Without_a_shared_store_the_other_replica_does_not_know_the_job()
    {
        using var fa = new ServerFactory();
        using var fb = new ServerFactory();
        var (a, b) = await Ready(fa, fb);
        var (id, _, _) = await a.CreateJob("""{"class_label": 2, "steps": 2}""");
        await a.WaitForJob(id, j => j.GetProperty("state").GetString() == "succeeded", "succeeded on A");
        Assert.Equal(HttpStatusCode.NotFound, (await b.GetAsync($"/v1/jobs/{id}")).StatusCode);
    }
}
