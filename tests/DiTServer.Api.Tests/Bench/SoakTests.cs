using System.Diagnostics;
using System.Net;
using DiTServer.Bench.Evidence;

namespace DiTServer.Api.Tests;

/// <summary>The fast CI version of <c>bench soak</c>: 300 requests (valid, invalid, abandoned) from 8 clients; no 5xx, every
/// request answered, and the worker holds no more tensors at the end than after the warm-up (RSS is reported, not asserted
/// here: this process also holds the test host and other tests' leftovers; the full run against a child server checks it).</summary>
public sealed class SoakTests
{
    [Fact]
    public async Task Three_hundred_mixed_requests_leave_no_5xx_and_no_live_tensors_behind()
    {
        using var factory = new ServerFactory(("Serving:QueueCapacity", "64"));
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        Task<MemorySample> Sample()
        {
            var s = factory.Engine.Snapshot();
            using var self = Process.GetCurrentProcess();
            return Task.FromResult(new MemorySample(self.WorkingSet64, s.WorkerLiveTensors, s.ActiveRequests + s.QueueDepth > 0));
        }
        var r = await Soak.RunAsync(client, 300, concurrency: 8, maxSteps: 3, Sample);
        var statuses = string.Join(", ", r.ByStatus.Select(kv => $"{kv.Key}: {kv.Value}"));
        Assert.True(r.Status5xx == 0, statuses);
        Assert.True(r.ByStatus.Keys.All(k => k is 200 or 400), statuses);
        Assert.Equal(300, r.ByStatus.Values.Sum() + r.Abandoned);
        Assert.True(r.ByStatus.GetValueOrDefault(200) > 200, statuses);
        Assert.True(r.TensorGrowth <= 0, $"worker live tensors {r.Baseline.LiveTensors} after warm-up, {r.Final.LiveTensors} at the end");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
    }
}
