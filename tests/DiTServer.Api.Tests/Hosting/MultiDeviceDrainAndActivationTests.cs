using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using DiTServer.Api.Admin;
using DiTServer.Core.Model;
using DiTServer.Tests.Shared;

namespace DiTServer.Api.Tests;

/// <summary>Two engines (<c>DiT:Devices</c> = ["cpu","cpu"]) at the two moments that touch all of them: a drain
/// (shutdown begins while each engine runs a request and one waits: both running ones finish, the waiting one gets 503)
/// and an activation (new weights reach every engine: afterwards both engines give the new pixels, none the old).</summary>
public sealed class MultiDeviceDrainAndActivationTests() : AdminTestFolders("dit-multi-")
{
    private static readonly (string, string)[] TwoEngines =
    [
        ("DiT:Devices:0", "cpu"), ("DiT:Devices:1", "cpu"), ("Serving:IntraOpThreads", "1"), ("Serving:WarmUp", "false"),
        // One guided image is 2 rows: each engine runs one request at a time, so two requests use both engines.
        ("Serving:MaxBatchRows", "2"), ("Serving:MaxImagesPerRequest", "1"),
    ];

    [Fact]
    public async Task A_drain_finishes_the_request_running_on_each_engine_and_refuses_the_waiting_one()
    {
        var gate = new StepGate();
        using var factory = new ServerFactory(TwoEngines) { Gate = gate };
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "both engines ready");
        var running = Enumerable.Range(0, 2).Select(seed => client.PostAsync("/v1/images", JobsTestClient.Json(Body(seed, steps: 6)))).ToList();
        await factory.WaitFor(_ => factory.Engine.Cores.All(c => c.Snapshot().ActiveRequests == 1), "one request running on each engine");
        var waiting = client.PostAsync("/v1/images", JobsTestClient.Json(Body(9, steps: 6)));
        await factory.WaitFor(s => s.QueueDepth == 1, "the third request queued");

        factory.Engine.BeginShutdown();
        // One more forward per engine: at that step boundary each worker sees the shutdown and answers the queue.
        gate.Allow(2);
        var refused = await waiting; // it never started: 503 at once, not after the running ones
        await JobsTestClient.AssertProblem(refused, HttpStatusCode.ServiceUnavailable);
        Assert.All(running, r => Assert.False(r.IsCompleted, "a running request ended before the gate let it finish"));
        gate.Open();
        foreach (var r in running)
        {
            var response = await r;
            Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        }
        Assert.All(factory.Engine.Cores, c => Assert.True(c.Snapshot().Forwards >= 6, $"{c.Label}: {c.Snapshot()}"));
    }

    [Fact]
    public async Task An_activation_reaches_every_engine()
    {
        // A served 1-channel 8×8 pixel model that a job on the synthetic bands can fine-tune (same architecture).
        string modelDir = Path.Combine(Root, "served");
        RandomModel.Write(modelDir, new DiTConfig { InputSize = 8, PatchSize = 4, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = 2 },
            ["top", "bottom"]);
        using var factory = new ServerFactory([.. TwoEngines, ("DiT:Model", modelDir), ("Admin:ApiKeySha256", AdminKey.HashOf(Key)),
            ("Training:DataRoot", DataRoot), ("Training:OutputRoot", OutputRoot)]);
        var client = factory.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        await factory.WaitFor(s => s.Ready, "both engines ready");
        var before = await Pngs(factory, client);
        Assert.All(before, png => Assert.Equal(before[0], png)); // same seed, either engine: the same image

        var job = await client.PostAsync("/v1/admin/training/jobs",
            Json("""{ "dataset": "bands", "output": "tune", "init_from": "served", "steps": 20, "batch_size": 8, "learning_rate": """ +
                 """0.01, "ema_decay": 0.5, "checkpoint_every": 10 }"""));
        Assert.Equal(HttpStatusCode.Accepted, job.StatusCode);
        var id = JsonDocument.Parse(await job.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!;
        await WaitForState(client, id, "Succeeded");
        var activation = await client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null);
        Assert.True(activation.StatusCode == HttpStatusCode.OK, await activation.Content.ReadAsStringAsync());

        var after = await Pngs(factory, client);
        Assert.All(after, png => Assert.Equal(after[0], png)); // both engines agree on the new weights
        Assert.NotEqual(before[0], after[0]);
    }

    /// <summary>The same request several times at once, until both engines have run at least one of them.</summary>
    private static async Task<List<byte[]>> Pngs(ServerFactory factory, HttpClient client)
    {
        var forwards = factory.Engine.Cores.Select(c => c.Snapshot().Forwards).ToList();
        var pngs = new List<byte[]>();
        for (int round = 0; round < 10; round++)
        {
            var responses = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => client.PostAsync("/v1/images", Json(Body(5, steps: 8)))));
            foreach (var r in responses)
            {
                Assert.True(r.StatusCode == HttpStatusCode.OK, await r.Content.ReadAsStringAsync());
                pngs.Add(await r.Content.ReadAsByteArrayAsync());
            }
            if (factory.Engine.Cores.Select((c, i) => c.Snapshot().Forwards > forwards[i]).All(x => x)) return pngs;
        }
        throw new InvalidOperationException("40 concurrent requests never used both engines");
    }

    private static string Body(int seed, int steps) => $$"""{ "class_label": 1, "steps": {{steps}}, "seed": {{seed}}, "cfg_scale": 2 }""";
}
