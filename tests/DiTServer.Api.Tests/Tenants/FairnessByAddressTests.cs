using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using DiTServer.Bench.Evidence;

namespace DiTServer.Api.Tests;

/// <summary>Without API keys a client is its address (<c>ClientIdentity</c>: <c>ip:ADDRESS</c>), over real HTTP: a
/// real server on 127.0.0.1, one client connecting from 127.0.0.2 and one from 127.0.0.3. The first meets its own
/// queue share (429, naming <c>MaxQueuedCostPerClient</c>) while the second, from another address, is still admitted.</summary>
public sealed class FairnessByAddressTests
{
    // One 1000-step guided image costs 2 rows × 1000 steps = 2,000 row-steps; a client may hold 3,000 queued. The jobs
    // cannot finish in the milliseconds between the posts, so no timing is involved.
    private const string Job = """{"class_label": 1, "num_images": 1, "steps": 1000, "cfg_scale": 4, "seed": 1}""";

    [Fact]
    public async Task Each_address_has_its_own_share()
    {
        var settings = new Dictionary<string, string>
        {
            ["Serving__MaxQueuedCostPerClient"] = "3000", ["Serving__WarmUp"] = "false",
        };
        await using var server = await ChildServer.StartAsync(Path.Combine(RepositoryPaths.Root, "models", "dit-fashion-mnist"), settings,
            TimeSpan.FromMinutes(1));
        using var two = From("127.0.0.2", server.Address);
        using var three = From("127.0.0.3", server.Address);
        var ids = new List<(HttpClient Client, string Id)>();
        try
        {
            // 127.0.0.2 posts until refused: its first job runs, the next waits in the queue (the per-client row cap),
            // and the one after that would put 4,000 queued row-steps past its 3,000.
            HttpResponseMessage refused;
            while (true)
            {
                var response = await two.PostAsync("/v1/jobs", JobsTestClient.Json(Job));
                if (response.StatusCode != HttpStatusCode.Accepted) { refused = response; break; }
                ids.Add((two, Id(await response.Content.ReadAsStringAsync())));
                Assert.True(ids.Count < 5, "127.0.0.2 was never limited");
            }
            var problem = await JobsTestClient.AssertProblem(refused, (HttpStatusCode)429);
            Assert.Contains("MaxQueuedCostPerClient", problem.GetProperty("detail").GetString());

            // Another address is another client: its own share is untouched by 127.0.0.2's.
            var other = await three.PostAsync("/v1/jobs", JobsTestClient.Json(Job));
            Assert.Equal(HttpStatusCode.Accepted, other.StatusCode);
            ids.Add((three, Id(await other.Content.ReadAsStringAsync())));
        }
        finally
        {
            foreach (var (client, id) in ids) await client.DeleteAsync($"/v1/jobs/{id}");
        }
    }

    private static string Id(string json) => JsonDocument.Parse(json).RootElement.GetProperty("id").GetString()!;

    /// <summary>An HttpClient whose connections leave from <paramref name="local"/> (any 127.x address is loopback on Linux).</summary>
    private static HttpClient From(string local, Uri server)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (context, cancel) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    socket.Bind(new IPEndPoint(IPAddress.Parse(local), 0));
                    await socket.ConnectAsync(context.DnsEndPoint, cancel);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { BaseAddress = server, Timeout = TimeSpan.FromMinutes(1) };
    }
}
