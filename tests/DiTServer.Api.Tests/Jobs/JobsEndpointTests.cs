using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using DiTServer.Api.Jobs;
using Microsoft.Extensions.DependencyInjection;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>/v1/jobs on the tiny model: lifecycle with events, equality with /v1/images, cancel, 404/409/400/503,
/// and an event stream whose client leaves (the job goes on; the subscription is released).</summary>
/// <remarks>The batch holds 4 rows: a guided 1000-step "blocker" (2 rows) keeps a 2-image guided job (4 rows)
/// queued until the blocker is cancelled, so every test sees the states it asserts without racing the worker.</remarks>
public sealed class JobsEndpointTests(JobsEndpointTests.Server server) : IClassFixture<JobsEndpointTests.Server>
{
    // 10 ms per step: the 1000-step blocker lasts over 10 s however fast the machine, 10-step jobs stay short.
    public sealed class Server() : ServerFixture(new(("Serving:MaxBatchRows", "4"), ("Serving:MaxImagesPerRequest", "2"), ("Serving:QueueCapacity", "2"))
    {
        StepDelay = TimeSpan.FromMilliseconds(10),
    });

    private const string Body = """{"class_label": 3, "num_images": 2, "steps": 10, "cfg_scale": 4, "seed": 42}""";

    private readonly HttpClient client = server.Factory.CreateClient();
    private JobStore Store => server.Factory.Services.GetRequiredService<JobStore>();

    private Task<string> StartBlocker() => client.StartBlocker(server.Factory);

    private async Task Cancel(string id)
    {
        var response = await client.DeleteAsync($"/v1/jobs/{id}");
        Assert.True(response.StatusCode is HttpStatusCode.Accepted or HttpStatusCode.NoContent, response.StatusCode.ToString());
    }

    [Fact]
    public async Task Job_is_queued_then_streams_progress_and_done_and_its_result_equals_v1_images()
    {
        var blocker = await StartBlocker();
        var (id, created, body) = await client.CreateJob(Body);
        Assert.Equal($"/v1/jobs/{id}", created.Headers.Location?.OriginalString);
        Assert.Equal("queued", body.State());
        Assert.Equal(1, body.GetProperty("queue_position").GetInt64());
        Assert.Equal(42, body.GetProperty("parameters").GetProperty("seed").GetInt64());

        using var events = await client.OpenEvents(id);
        var first = await events.Next();
        Assert.Equal("queued", first?.Type);
        Assert.Equal(1, first!.Value.Data.GetProperty("queue_position").GetInt64());

        var cancelled = await client.DeleteAsync($"/v1/jobs/{blocker}");
        Assert.Equal(HttpStatusCode.Accepted, cancelled.StatusCode);
        Assert.Equal("cancelled", JsonDocument.Parse(await cancelled.Content.ReadAsStringAsync()).RootElement.State());

        var rest = await events.ReadToEnd();
        var progress = rest.Where(e => e.Type == "progress").Select(e => e.Data.GetProperty("step").GetInt32()).ToList();
        Assert.NotEmpty(progress);
        Assert.Equal(progress.OrderBy(s => s), progress);
        Assert.Contains(progress, s => s > 0);
        Assert.All(rest.Where(e => e.Type == "progress"), e => Assert.Equal(10, e.Data.GetProperty("total_steps").GetInt32()));
        Assert.Equal("done", rest[^1].Type);
        Assert.Equal($"/v1/jobs/{id}/result", rest[^1].Data.GetProperty("result_url").GetString());

        var job = await client.GetJob(id);
        Assert.Equal("succeeded", job.State());
        Assert.Equal(10, job.GetProperty("step").GetInt32());

        var png = await client.GetAsync($"/v1/jobs/{id}/result");
        Assert.Equal(HttpStatusCode.OK, png.StatusCode);
        Assert.Equal("image/png", png.Content.Headers.ContentType?.MediaType);
        var direct = await client.PostAsync("/v1/images", Json(Body));
        Assert.Equal(HttpStatusCode.OK, direct.StatusCode);
        Assert.Equal(await direct.Content.ReadAsByteArrayAsync(), await png.Content.ReadAsByteArrayAsync());

        var jsonRequest = new HttpRequestMessage(HttpMethod.Get, $"/v1/jobs/{id}/result");
        jsonRequest.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var json = JsonDocument.Parse(await (await client.SendAsync(jsonRequest)).Content.ReadAsStringAsync()).RootElement;
        var images = json.GetProperty("images").EnumerateArray().ToList();
        Assert.Equal(2, images.Count);
        var second = await client.GetByteArrayAsync($"/v1/jobs/{id}/result?index=1");
        Assert.Equal(Convert.FromBase64String(images[1].GetProperty("png_base64").GetString()!), second);
        await AssertProblem(await client.GetAsync($"/v1/jobs/{id}/result?index=2"), HttpStatusCode.BadRequest);

        // The cancelled blocker left the batch long before its 1000 steps, and has no result.
        var cancelledBlocker = await client.GetJob(blocker);
        Assert.Equal("cancelled", cancelledBlocker.State());
        Assert.True(cancelledBlocker.GetProperty("step").GetInt32() < 1000, cancelledBlocker.ToString()); // its own steps, not the fixture's
        await AssertProblem(await client.GetAsync($"/v1/jobs/{blocker}/result"), HttpStatusCode.Conflict);
    }

    [Fact]
    public async Task Delete_cancels_a_running_job_its_rows_leave_and_a_second_delete_forgets_it()
    {
        var id = await StartBlocker();
        var early = await AssertProblem(await client.GetAsync($"/v1/jobs/{id}/result"), HttpStatusCode.Conflict);
        Assert.Contains("running", early.GetProperty("detail").GetString());

        var response = await client.DeleteAsync($"/v1/jobs/{id}");
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        Assert.Equal("cancelled", (await client.GetJob(id)).State());
        await server.Factory.WaitFor(s => s.ActiveRequests == 0 && s.ActiveRows == 0, "the cancelled job's rows to leave", 10);

        using (var events = await client.OpenEvents(id))
        {
            var all = await events.ReadToEnd(10);
            Assert.Equal(["cancelled"], all.Select(e => e.Type));
        }
        await AssertProblem(await client.GetAsync($"/v1/jobs/{id}/result"), HttpStatusCode.Conflict);

        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/v1/jobs/{id}")).StatusCode);
        await AssertProblem(await client.GetAsync($"/v1/jobs/{id}"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Event_stream_whose_client_leaves_is_released_and_the_job_goes_on()
    {
        var id = await StartBlocker();
        var job = Store.Get(id)!;
        var events = await client.OpenEvents(id);
        Assert.Equal("progress", (await events.Next())?.Type);
        Assert.Equal("progress", (await events.Next())?.Type);
        Assert.Equal(1, job.SubscriberCount);

        events.Dispose(); // the client goes away mid-stream
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (job.SubscriberCount > 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal(0, job.SubscriberCount);

        int step = (await client.GetJob(id)).GetProperty("step").GetInt32();
        var later = await client.WaitForJob(id, j => j.GetProperty("step").GetInt32() > step, "the job to go on after its watcher left", 10);
        Assert.Equal("running", later.State());
        await Cancel(id);
    }

    [Fact]
    public async Task Unknown_job_is_404_problem_on_every_route()
    {
        const string id = "job_0000000000000000000000000000dead";
        foreach (var path in new[] { $"/v1/jobs/{id}", $"/v1/jobs/{id}/events", $"/v1/jobs/{id}/result" })
        {
            var problem = await AssertProblem(await client.GetAsync(path), HttpStatusCode.NotFound);
            Assert.Contains(id, problem.GetProperty("detail").GetString());
        }
        await AssertProblem(await client.DeleteAsync($"/v1/jobs/{id}"), HttpStatusCode.NotFound);
    }

    [Theory]
    [InlineData("", "body is empty")]
    [InlineData("{", "malformed JSON")]
    [InlineData("[]", "must be a JSON object")]
    [InlineData("{}", "class_label is required")]
    [InlineData("""{"class_label": 12}""", "out of range 0..9")]
    [InlineData("""{"class_label": 1, "steps": 0}""", "steps must be in 1..1000")]
    [InlineData("""{"class_label": 1, "num_images": 3}""", "num_images must be in 1..2")]
    [InlineData("""{"class_label": 1, "colour": "red"}""", "unknown field 'colour'")]
    public async Task Bad_job_bodies_are_400_problems(string body, string expected)
    {
        var problem = await AssertProblem(await client.PostAsync("/v1/jobs", Json(body)), HttpStatusCode.BadRequest);
        Assert.Contains(expected, problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Non_json_job_body_is_415()
    {
        await AssertProblem(await client.PostAsync("/v1/jobs", new StringContent("class_label=1", System.Text.Encoding.UTF8, "text/plain")),
            HttpStatusCode.UnsupportedMediaType);
    }

    [Fact]
    public async Task Full_queue_refuses_jobs_with_503_and_retry_after()
    {
        var blocker = await StartBlocker();
        var queued = new List<string>();
        for (int i = 0; i < 2; i++) queued.Add((await client.CreateJob(Body)).Id);
        Assert.Equal(2, (await client.GetJob(queued[1])).GetProperty("queue_position").GetInt64());

        var refused = await client.PostAsync("/v1/jobs", Json(Body));
        await AssertProblem(refused, HttpStatusCode.ServiceUnavailable);
        Assert.True(refused.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After is missing");

        foreach (var id in queued) await Cancel(id);
        await Cancel(blocker);
        await server.Factory.WaitFor(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "everything cancelled", 10);
    }

    [Fact]
    public async Task A_queued_job_deleted_frees_its_place_at_once_and_the_jobs_behind_move_up()
    {
        var blocker = await StartBlocker();
        var queued = new List<string>();
        for (int i = 0; i < 2; i++) queued.Add((await client.CreateJob(Body)).Id);
        await Cancel(queued[0]);
        // The blocker still runs: the deleted job's place is free now, not when the worker would have reached it.
        Assert.Equal(1, (await client.GetJob(queued[1])).GetProperty("queue_position").GetInt64());
        queued.Add((await client.CreateJob(Body)).Id);
        Assert.Equal(2, (await client.GetJob(queued[2])).GetProperty("queue_position").GetInt64());
        Assert.Equal(1, server.Factory.Engine.Snapshot().ActiveRequests);

        foreach (var id in queued.Skip(1)) await Cancel(id);
        await Cancel(blocker);
        await server.Factory.WaitFor(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "everything cancelled", 10);
    }
}
