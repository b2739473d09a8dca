using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace DiTServer.Api.Tests;

/// <summary>Multi-tenant admission over HTTP: a flooding client meets its per-client queue share (429), and another
/// client's small request is admitted beside the flood and finishes in its own few steps, with the same pixels as alone.</summary>
public sealed class FairnessTests
{
    private static ServerFactory Server() => new(
        ("Serving:MaxBatchRows", "16"), ("Serving:MaxImagesPerRequest", "8"), ("Serving:QueueCapacity", "64"),
        ("Serving:MaxQueuedCostPerClient", "40000"),
        ("Clients:ApiKeys:flood", "flood-key"), ("Clients:ApiKeys:light", "light-key"))
    {
        StepDelay = TimeSpan.FromMilliseconds(5),
    };

    private static HttpClient As(ServerFactory factory, string key)
    {
        var client = factory.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    private const string Heavy = """{"class_label": 1, "num_images": 8, "steps": 1000, "cfg_scale": 4, "seed": 1}""";
    private const string Light = """{"class_label": 3, "num_images": 1, "steps": 4, "cfg_scale": 4, "seed": 9}""";

    [Fact]
    public async Task A_flooding_client_gets_429_past_its_share_and_cannot_delay_another_clients_small_request()
    {
        using var factory = Server();
        var flood = As(factory, "flood-key");
        var light = As(factory, "light-key");
        await factory.WaitFor(s => s.Ready, "warm-up");

        // Alone first: the light request's pixels when nobody else is there.
        var alone = await light.PostAsync("/v1/images", JobsTestClient.Json(Light));
        Assert.Equal(HttpStatusCode.OK, alone.StatusCode);
        var alonePng = await alone.Content.ReadAsByteArrayAsync();

        // 16 rows × 1000 steps = 16,000 row-steps per job: the third goes past 40,000 and is refused with 429.
        var jobs = new List<string>();
        HttpResponseMessage refused;
        while (true)
        {
            var response = await flood.PostAsync("/v1/jobs", JobsTestClient.Json(Heavy));
            if (response.StatusCode != HttpStatusCode.Accepted) { refused = response; break; }
            jobs.Add(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!);
            Assert.True(jobs.Count < 10, "the flooder was never limited");
        }
        Assert.Equal((HttpStatusCode)429, refused.StatusCode);
        Assert.True(refused.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After is missing");
        var problem = await JobsTestClient.AssertProblem(refused, (HttpStatusCode)429);
        Assert.Contains("MaxQueuedCostPerClient", problem.GetProperty("detail").GetString());
        await factory.WaitFor(s => s.ActiveRequests >= 1, "the flood running");

        // The other client is admitted beside the running flood and finishes in its 4 steps (the flood has ~1000 left).
        long before = factory.Engine.Snapshot().Forwards;
        var mixed = await light.PostAsync("/v1/images", JobsTestClient.Json(Light));
        long forwards = factory.Engine.Snapshot().Forwards - before;
        Assert.Equal(HttpStatusCode.OK, mixed.StatusCode);
        Assert.True(forwards < 50, $"the light request waited {forwards} forwards behind the flood");
        Assert.Equal(alonePng, await mixed.Content.ReadAsByteArrayAsync());
        // The flood's two 16-row runs cannot share a 16-row forward: they took turns, and the metric counted it.
        var metrics = await light.GetStringAsync("/metrics");
        var paused = System.Text.RegularExpressions.Regex.Match(metrics, @"^dit_run_steps_paused_total\{[^}]*\} (\S+)$",
            System.Text.RegularExpressions.RegexOptions.Multiline);
        Assert.True(paused.Success && double.Parse(paused.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 0, "no paused steps counted");
        foreach (var id in jobs) await flood.DeleteAsync($"/v1/jobs/{id}");
    }
}
