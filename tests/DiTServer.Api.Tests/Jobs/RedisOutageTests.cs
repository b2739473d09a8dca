using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace DiTServer.Api.Tests;

/// <summary>Two replicas on one Redis, and Redis goes away (killed) and comes back on the same port. What must hold
/// whatever the store does during the outage (fail fast with 503, or serve what the replica owns): no 500, no request
/// left hanging, the owner keeps its finished job; and once Redis is back, jobs are shared between replicas again.</summary>
public sealed class RedisOutageTests
{
    private const string Small = """{"class_label": 2, "num_images": 1, "steps": 2, "seed": 3}""";

    [Fact]
    public async Task A_redis_outage_gives_no_500_and_no_hang_and_sharing_recovers()
    {
        int port = FreePort();
        var redis = StartRedis(port);
        try
        {
            string store = $"127.0.0.1:{port},connectTimeout=500,syncTimeout=500,asyncTimeout=500,abortConnect=false";
            string prefix = $"o{Guid.NewGuid():N}:";
            using var fa = new ServerFactory(("SharedStore:Redis", store), ("SharedStore:KeyPrefix", prefix));
            using var fb = new ServerFactory(("SharedStore:Redis", store), ("SharedStore:KeyPrefix", prefix));
            var a = fa.CreateClient();
            var b = fb.CreateClient();
            // A hung request fails the test rather than the run (the store's own timeouts are 0.5 s).
            a.Timeout = b.Timeout = TimeSpan.FromSeconds(30);
            await fa.WaitFor(s => s.Ready, "replica A warm-up");
            await fb.WaitFor(s => s.Ready, "replica B warm-up");

            var (before, _, _) = await a.CreateJob(Small);
            await b.WaitForJob(before, j => j.GetProperty("state").GetString() == "succeeded", "A's job, seen from B");

            Stop(redis);
            // During the outage: every answer is a deliberate one.
            var answers = new List<(string What, HttpStatusCode Status)>
            {
                ("GET A's job on A", (await a.GetAsync($"/v1/jobs/{before}")).StatusCode),
                ("GET A's job on B", (await b.GetAsync($"/v1/jobs/{before}")).StatusCode),
                ("GET A's result on B", (await b.GetAsync($"/v1/jobs/{before}/result")).StatusCode),
                ("POST a job on B", (await b.PostAsync("/v1/jobs", JobsTestClient.Json(Small))).StatusCode),
                ("POST an image on A", (await a.PostAsync("/v1/images", JobsTestClient.Json(Small))).StatusCode),
            };
            Assert.All(answers, x => Assert.True((int)x.Status < 500 || x.Status == HttpStatusCode.ServiceUnavailable,
                $"{x.What} during the Redis outage: {(int)x.Status}"));
            // The owner keeps what it made: its finished job answers from its own memory or says 503, never loses it silently.
            Assert.Contains(answers[0].Status, new[] { HttpStatusCode.OK, HttpStatusCode.ServiceUnavailable });
            Assert.Contains(answers[4].Status, new[] { HttpStatusCode.OK, HttpStatusCode.ServiceUnavailable });

            redis = StartRedis(port);
            // Recovery: once the replicas have reconnected, a job made on A is seen through B again. Each try makes a
            // new job (one made while A was still reconnecting may never have reached the store).
            var seen = false;
            for (var waited = Stopwatch.StartNew(); !seen; )
            {
                Assert.True(waited.Elapsed < TimeSpan.FromMinutes(1), "sharing did not recover within a minute of Redis coming back");
                var create = await a.PostAsync("/v1/jobs", JobsTestClient.Json(Small));
                Assert.True((int)create.StatusCode < 500 || create.StatusCode == HttpStatusCode.ServiceUnavailable,
                    $"POST after recovery: {create.StatusCode}");
                if (create.StatusCode != HttpStatusCode.Accepted) { await Task.Delay(100); continue; }
                string id = JsonDocument.Parse(await create.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!;
                for (int i = 0; i < 20 && !seen; i++)
                {
                    var status = (await b.GetAsync($"/v1/jobs/{id}")).StatusCode;
                    Assert.True((int)status < 500 || status == HttpStatusCode.ServiceUnavailable, $"GET on B after recovery: {status}");
                    seen = status == HttpStatusCode.OK;
                    if (!seen) await Task.Delay(100);
                }
            }
        }
        finally
        {
            Stop(redis);
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static Process StartRedis(int port)
    {
        const string binary = "/usr/bin/redis-server";
        if (!File.Exists(binary)) throw new InvalidOperationException($"{binary} not found: apt-get install redis-server (.ci/run installs it)");
        var process = Process.Start(new ProcessStartInfo(binary, ["--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        for (var waited = Stopwatch.StartNew(); ; Thread.Sleep(50))
        {
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, port);
                return process;
            }
            catch (SocketException) when (waited.Elapsed < TimeSpan.FromSeconds(20) && !process.HasExited) { }
        }
    }

    private static void Stop(Process redis)
    {
        if (!redis.HasExited) redis.Kill();
        redis.WaitForExit(5000);
        redis.Dispose();
    }
}
