using System.Net;
using System.Text.Json;
using DiTServer.Api.Jobs;
using DiTServer.Core.Model;
using DiTServer.Tests.Shared;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>Step previews in a job's event stream (<c>preview_every</c>): when they come, what they hold, that they
/// change nothing about the result, and how bad values are refused.</summary>
/// <remarks>As in <see cref="JobsEndpointTests"/>, a guided 1000-step blocker (2 of the 4 batch rows) keeps the job
/// under test (4 rows) queued until the test has subscribed to its events, so the stream holds every event.</remarks>
public sealed class JobPreviewTests(JobPreviewTests.Server server) : IClassFixture<JobPreviewTests.Server>
{
    // The fixture model makes 16 px images from 8×8 latents; a 12 px cap exercises both the enlarging (8 → 12)
    // and the capping (16 → 12).
    public sealed class Server() : ServerFixture(new(("Serving:MaxBatchRows", "4"), ("Serving:MaxImagesPerRequest", "2"), ("Jobs:PreviewMaxSize", "12"))
    {
        StepDelay = TimeSpan.FromMilliseconds(10),
    });

    private readonly HttpClient client = server.Factory.CreateClient();

    /// <summary>Creates the job behind a blocker, subscribes, releases it; returns every event and the result as JSON.</summary>
    internal static async Task<(List<(string Type, JsonElement Data)> Events, JsonElement Result)> RunWatched(ServerFactory factory, HttpClient client,
        string body)
    {
        var blocker = await client.StartBlocker(factory);
        var (id, _, _) = await client.CreateJob(body);
        using var events = await client.OpenEvents(id);
        Assert.Equal("queued", (await events.Next())?.Type);
        Assert.Equal(HttpStatusCode.Accepted, (await client.DeleteAsync($"/v1/jobs/{blocker}")).StatusCode);
        var all = await events.ReadToEnd();
        Assert.Equal("done", all[^1].Type);
        var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/jobs/{id}/result");
        request.Headers.Accept.Add(new("application/json"));
        var result = JsonDocument.Parse(await (await client.SendAsync(request)).Content.ReadAsStringAsync()).RootElement.Clone();
        return (all, result);
    }

    private static List<int> PreviewSteps(List<(string Type, JsonElement Data)> events) =>
        events.Where(e => e.Type == "preview").Select(e => e.Data.GetProperty("step").GetInt32()).ToList();

    [Fact]
    public async Task Previews_come_every_k_steps_but_the_last_as_pngs_of_the_capped_size()
    {
        var (events, _) = await RunWatched(server.Factory, client,
            """{"class_label": 3, "num_images": 2, "steps": 10, "cfg_scale": 4, "seed": 42, "preview_every": 3}""");
        Assert.Equal([3, 6, 9], PreviewSteps(events));
        foreach (var (type, data) in events.Where(e => e.Type == "preview"))
        {
            Assert.StartsWith("job_", data.GetProperty("id").GetString());
            Assert.Equal(10, data.GetProperty("total_steps").GetInt32());
            Assert.Equal((12, 12), (data.GetProperty("width").GetInt32(), data.GetProperty("height").GetInt32()));
            var images = data.GetProperty("images").EnumerateArray().ToList();
            Assert.Equal([0, 1], images.Select(i => i.GetProperty("index").GetInt32()));
            foreach (var image in images)
            {
                var png = Convert.FromBase64String(image.GetProperty("png_base64").GetString()!);
                using var decoded = Image.Load(png);
                Assert.Equal((12, 12), (decoded.Width, decoded.Height));
                Assert.Equal(PngColorType.Rgb, decoded.Metadata.GetPngMetadata().ColorType);
            }
            // Each preview follows the progress event of its step (it is encoded after the step was reported).
            int step = data.GetProperty("step").GetInt32();
            int progressAt = events.FindIndex(e => e.Type == "progress" && e.Data.GetProperty("step").GetInt32() == step);
            Assert.InRange(progressAt, 0, events.FindIndex(e => e.Type == "preview" && e.Data.GetProperty("step").GetInt32() == step) - 1);
        }
        // Two previews of the same step differ from step to step: they show the denoising, not a constant.
        var first = events.First(e => e.Type == "preview").Data.GetProperty("images")[0].GetProperty("png_base64").GetString();
        var last = events.Last(e => e.Type == "preview").Data.GetProperty("images")[0].GetProperty("png_base64").GetString();
        Assert.NotEqual(first, last);
    }

    [Fact]
    public async Task Previews_change_nothing_in_the_result_and_a_job_without_preview_every_gets_none()
    {
        const string plain = """{"class_label": 5, "num_images": 2, "steps": 8, "cfg_scale": 4, "seed": 7}""";
        const string previewed = """{"class_label": 5, "num_images": 2, "steps": 8, "cfg_scale": 4, "seed": 7, "preview_every": 1}""";
        await server.Factory.WaitFor(s => s.Ready && s.ActiveRequests == 0 && s.QueueDepth == 0, "an idle engine");
        long tensorsBefore = server.Factory.Engine.Snapshot().WorkerLiveTensors;
        var (plainEvents, plainResult) = await RunWatched(server.Factory, client, plain);
        var (previewEvents, previewResult) = await RunWatched(server.Factory, client, previewed);
        await server.Factory.WaitFor(s => s.ActiveRequests == 0 && s.QueueDepth == 0, "an idle engine");
        // The kept x̂₀ and the preview tensors are all freed on the worker.
        Assert.Equal(tensorsBefore, server.Factory.Engine.Snapshot().WorkerLiveTensors);

        Assert.Empty(PreviewSteps(plainEvents));
        Assert.Equal([1, 2, 3, 4, 5, 6, 7], PreviewSteps(previewEvents));
        Assert.Equal(Pngs(plainResult), Pngs(previewResult));
        // … and both equal /v1/images for the same body (which draws from the same seeded generator).
        var direct = await client.PostAsync("/v1/images", Json(plain.Replace("}", ", \"preview_every\": null}")));
        await AssertProblem(direct, HttpStatusCode.BadRequest); // /v1/images does not take preview_every at all
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images") { Content = Json(plain) };
        request.Headers.Accept.Add(new("application/json"));
        var images = JsonDocument.Parse(await (await client.SendAsync(request)).Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(Pngs(plainResult), Pngs(images));

        static List<string> Pngs(JsonElement result) =>
            result.GetProperty("images").EnumerateArray().Select(i => i.GetProperty("png_base64").GetString()!).ToList();
    }

    [Fact]
    public async Task Cancelling_a_previewed_job_ends_its_stream_and_frees_its_tensors()
    {
        await server.Factory.WaitFor(s => s.Ready && s.ActiveRequests == 0 && s.QueueDepth == 0, "an idle engine");
        long tensorsBefore = server.Factory.Engine.Snapshot().WorkerLiveTensors;
        var (id, _, _) = await client.CreateJob("""{"class_label": 1, "steps": 1000, "cfg_scale": 4, "seed": 1, "preview_every": 1}""");
        using var events = await client.OpenEvents(id);
        while (await events.Next() is { } e && e.Type != "preview") { }
        Assert.Equal(HttpStatusCode.Accepted, (await client.DeleteAsync($"/v1/jobs/{id}")).StatusCode);
        var rest = await events.ReadToEnd(10);
        Assert.Equal("cancelled", rest[^1].Type); // nothing, not even a late preview, follows the final event
        await server.Factory.WaitFor(s => s.ActiveRequests == 0 && s.ActiveRows == 0, "the cancelled job's rows to leave", 10);
        Assert.Equal(tensorsBefore, server.Factory.Engine.Snapshot().WorkerLiveTensors);
    }

    [Fact]
    public async Task Preview_every_is_shown_in_the_job_parameters_only_when_asked()
    {
        var (with, _, body) = await client.CreateJob("""{"class_label": 2, "steps": 4, "cfg_scale": 1, "preview_every": 2}""");
        Assert.Equal(2, body.GetProperty("parameters").GetProperty("preview_every").GetInt32());
        var (without, _, plain) = await client.CreateJob("""{"class_label": 2, "steps": 4, "cfg_scale": 1, "preview_every": 0}""");
        Assert.False(plain.GetProperty("parameters").TryGetProperty("preview_every", out _), plain.ToString());
        foreach (var id in new[] { with, without })
            await client.WaitForJob(id, j => j.State() == "succeeded", "the small job to finish");
    }

    [Theory]
    [InlineData("-1", "must be 0 (no previews) or in 1..10 (the job's steps), got -1")]
    [InlineData("11", "must be 0 (no previews) or in 1..10 (the job's steps), got 11")]
    [InlineData("2.5", "preview_every must be an integer")]
    [InlineData("\"3\"", "preview_every must be an integer")]
    [InlineData("true", "preview_every must be an integer")]
    [InlineData("[1]", "preview_every must be an integer")]
    [InlineData("3, \"preview_every\": 4", "appears more than once")]
    public async Task Bad_preview_every_is_400_problem_with_errors(string value, string expected)
    {
        var body = $$"""{"class_label": 1, "steps": 10, "preview_every": {{value}}}""";
        var problem = await AssertProblem(await client.PostAsync("/v1/jobs", Json(body)), HttpStatusCode.BadRequest);
        var errors = problem.GetProperty("errors").GetProperty("preview_every").EnumerateArray().Select(e => e.GetString()).ToList();
        Assert.Contains(errors, e => e!.Contains(expected));
        Assert.Contains(expected, problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task An_edit_job_takes_preview_every_up_to_the_steps_it_runs()
    {
        int size = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0]
            .GetProperty("image_size").GetInt32();
        string init = Convert.ToBase64String(TestPngs.Picture(size, size));
        // 20 steps at strength 0.25 run the last 5: a preview after every 6th would never come.
        string Body(int every) =>
            $$"""{"class_label": 1, "steps": 20, "sampler": "ddim", "init_image": "{{init}}", """ +
            $$"""  "strength": 0.25, "preview_every": {{every}}}""";
        var problem = await AssertProblem(await client.PostAsync("/v1/jobs", Json(Body(6))), HttpStatusCode.BadRequest);
        Assert.Contains("must be 0 (no previews) or in 1..5 (the job's steps), got 6",
            problem.GetProperty("errors").GetProperty("preview_every")[0].GetString());
        var (id, _, _) = await client.CreateJob(Body(5));
        await client.WaitForJob(id, j => j.State() == "succeeded", "the edit job to finish");
    }

    [Fact]
    public async Task Only_jobs_take_preview_every_and_other_field_errors_still_show()
    {
        var images = await AssertProblem(await client.PostAsync("/v1/images", Json("""{"class_label": 1, "preview_every": 2}""")), HttpStatusCode.BadRequest);
        Assert.Contains("unknown field 'preview_every'", images.GetProperty("detail").GetString());
        var openai = await client.PostAsync("/v1/images/generations", Json("""{"prompt": "1", "preview_every": 2}"""));
        Assert.Equal(HttpStatusCode.BadRequest, openai.StatusCode);
        var error = JsonDocument.Parse(await openai.Content.ReadAsStringAsync()).RootElement.GetProperty("error"); // OpenAI's dialect
        Assert.Equal("preview_every", error.GetProperty("param").GetString());

        var both = await AssertProblem(await client.PostAsync("/v1/jobs", Json("""{"class_label": 1, "steps": 0, "colour": 1, "preview_every": -2}""")),
            HttpStatusCode.BadRequest);
        var errors = both.GetProperty("errors");
        Assert.Contains("steps must be in 1..1000", errors.GetProperty("steps")[0].GetString());
        Assert.Contains("preview_every", errors.GetProperty("colour")[0].GetString()); // the list of fields names it
        Assert.Contains("1..steps", errors.GetProperty("preview_every")[0].GetString());
    }

    [Fact]
    public async Task Pixel_space_model_previews_are_its_x0_in_grayscale_area_averaged_to_the_cap()
    {
        // A 1-channel pixel-space model like the demo model (16 px here), previews capped at 8 px.
        var dir = Directory.CreateTempSubdirectory("dit-pixel-previews-").FullName;
        try
        {
            RandomModel.Write(dir, new DiTConfig { InputSize = 16, PatchSize = 4, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = 3 },
                ["circle", "square", "triangle"]);
            using var factory = new ServerFactory(("DiT:Model", dir), ("Serving:MaxBatchRows", "4"), ("Serving:MaxImagesPerRequest", "2"),
                ("Jobs:PreviewMaxSize", "8"))
            {
                StepDelay = TimeSpan.FromMilliseconds(10),
            };
            using var pixelClient = factory.CreateClient();
            var (events, result) = await RunWatched(factory, pixelClient,
                """{"class_label": "triangle", "num_images": 2, "steps": 9, "cfg_scale": 2, "seed": 3, "preview_every": 4}""");
            Assert.Equal([4, 8], PreviewSteps(events));
            foreach (var image in events.Where(e => e.Type == "preview").SelectMany(e => e.Data.GetProperty("images").EnumerateArray()))
            {
                using var decoded = Image.Load(Convert.FromBase64String(image.GetProperty("png_base64").GetString()!));
                Assert.Equal((8, 8), (decoded.Width, decoded.Height));
                Assert.Equal(PngColorType.Grayscale, decoded.Metadata.GetPngMetadata().ColorType);
            }
            using var final = Image.Load(Convert.FromBase64String(result.GetProperty("images")[0].GetProperty("png_base64").GetString()!));
            Assert.Equal((16, 16), (final.Width, final.Height)); // the result keeps its full size
        }
        finally { Directory.Delete(dir, true); }
    }
}

/// <summary><c>Jobs:PreviewMaxSize</c> is validated with the other job options (the server's start resolves them
/// first and stops with the message), not at the first preview.</summary>
public sealed class PreviewOptionsTests
{
    [Theory]
    [InlineData("4")]
    [InlineData("2048")]
    public void Out_of_range_preview_max_size_is_refused_with_the_key_named(string value)
    {
        var builder = WebApplication.CreateBuilder();
        builder.Configuration["Jobs:PreviewMaxSize"] = value;
        builder.AddJobs();
        using var app = builder.Build();
        var error = Assert.Throws<OptionsValidationException>(() => app.Services.GetRequiredService<IOptions<JobOptions>>().Value);
        Assert.Contains("Jobs:PreviewMaxSize must be between 8 and 1024", error.Message);
    }

    [Fact]
    public void Default_preview_max_size_is_64()
    {
        var builder = WebApplication.CreateBuilder();
        builder.AddJobs();
        using var app = builder.Build();
        Assert.Equal(64, app.Services.GetRequiredService<IOptions<JobOptions>>().Value.PreviewMaxSize);
    }
}
