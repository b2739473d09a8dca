using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace DiTServer.Api.Tests;

/// <summary><c>DiT:Devices</c> = ["cpu","cpu"]: two engines, each with its own model copy and worker thread, pull from one
/// queue; a request's pixels do not depend on which engine ran it; metrics, readiness and /v1/models know both.</summary>
public sealed class MultiDeviceTests
{
    private static string Body(int seed) => $$"""{"class_label": {{seed % 10}}, "num_images": 2, "steps": 6, "cfg_scale": 4, "seed": {{seed}}}""";

    [Fact]
    public async Task Two_cpu_engines_share_one_queue_and_give_the_pixels_of_one_engine()
    {
        // A single engine first: the reference pixels.
        var reference = new Dictionary<int, byte[]>();
        using (var single = new ServerFactory(("Serving:IntraOpThreads", "1")))
        {
            var client = single.CreateClient();
            await single.WaitFor(s => s.Ready, "warm-up");
            for (int seed = 0; seed < 8; seed++)
                reference[seed] = await (await client.PostAsync("/v1/images", JobsTestClient.Json(Body(seed)))).Content.ReadAsByteArrayAsync();
        }

        // MaxBatchRows 4 = one guided request of 2 images per forward: concurrent requests must spread over both engines.
        using var factory = new ServerFactory(("DiT:Devices:0", "cpu"), ("DiT:Devices:1", "cpu"), ("Serving:IntraOpThreads", "1"),
            ("Serving:MaxBatchRows", "4"), ("Serving:MaxImagesPerRequest", "2"));
        var http = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up of both engines");
        Assert.Equal(2, factory.Engine.Cores.Count);
        Assert.All(factory.Engine.Cores, c => Assert.True(c.Ready));

        var models = JsonDocument.Parse(await http.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        Assert.Equal(["cpu:0", "cpu:1"], models.GetProperty("devices").EnumerateArray().Select(d => d.GetString()!));

        var responses = await Task.WhenAll(Enumerable.Range(0, 8).Select(seed => http.PostAsync("/v1/images", JobsTestClient.Json(Body(seed)))));
        for (int seed = 0; seed < 8; seed++)
        {
            Assert.Equal(HttpStatusCode.OK, responses[seed].StatusCode);
            Assert.Equal(reference[seed], await responses[seed].Content.ReadAsByteArrayAsync());
        }

        // Both engines did work (one queue, two pullers), and each reports under its own device label.
        Assert.All(factory.Engine.Cores, c => Assert.True(c.Snapshot().Forwards > 2, $"{c.Label} never ran a request: {c.Snapshot()}"));
        var metrics = await http.GetStringAsync("/metrics");
        foreach (var device in new[] { "cpu:0", "cpu:1" })
        {
            var m = Regex.Match(metrics, $"^dit_forward_rows_count\\{{device=\"{Regex.Escape(device)}\"\\}} (\\S+)$", RegexOptions.Multiline);
            Assert.True(m.Success, $"no forward metrics for {device}");
            Assert.True(double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) > 2);
        }
    }

    [Theory]
    [InlineData(new[] { "cpu", "cpu" }, true)]
    [InlineData(new[] { "cpu", "tpu" }, false)]
    [InlineData(new[] { "cuda:0", "" }, false)]
    public void Every_listed_device_is_checked_at_start(string[] devices, bool ok)
    {
        var options = new DiTServer.Api.Hosting.DiTOptions { Model = TestPaths.TinyModel, Devices = devices };
        var result = new DiTServer.Api.Hosting.DiTOptionsSetup(new DiTOptionsTests.Environment()).Validate(null, options);
        Assert.Equal(ok, result.Succeeded);
        if (!ok) Assert.Contains("DiT:Devices", result.FailureMessage);
    }

    [Fact]
    public void Device_labels_are_distinct_when_a_device_is_listed_twice()
    {
        Assert.Equal(["cpu:0", "cpu:1"], DiTServer.Core.Serving.DeviceLabels.Of(["cpu", "cpu"]));
        Assert.Equal(["cuda:0", "cuda:1", "cuda:0#2"], DiTServer.Core.Serving.DeviceLabels.Of(["cuda:0", "cuda:1", "cuda:0"]));
        Assert.Equal(["cuda:0", "cuda:0#2"], DiTServer.Core.Serving.DeviceLabels.Of(["cuda", "cuda"]));
    }
}
