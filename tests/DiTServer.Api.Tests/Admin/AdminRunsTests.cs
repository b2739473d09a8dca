using DiTServer.Core.Pipeline;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using DiTServer.Api.Admin;
using DiTServer.Core.Model;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;

namespace DiTServer.Api.Tests;

/// <summary>Admin runs across restarts (listed with their checkpoint step, resumable through the API), activation of a
/// damaged or missing checkpoint (409/422, the old weights keep serving), no live tensors left by activations, and
/// model or batch sizes refused before anything is allocated.</summary>
public class AdminRunsTests() : AdminTestFolders("dit-admin-runs-")
{
    private ServerFactory Server(string? model = null, params (string, string)[] more) => new(
        [("Training:DataRoot", DataRoot), ("Training:OutputRoot", OutputRoot), ("Serving:WarmUp", "false"),
         ("Admin:ApiKeySha256", AdminKey.HashOf(Key)), .. model is null ? Array.Empty<(string, string)>() : [("DiT:Model", model)], .. more]);

    private static HttpClient Admin(ServerFactory server)
    {
        var client = server.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        return client;
    }

    private static string Job(string output, long steps, string extra = "") =>
        $$"""{ "dataset": "bands", "output": "{{output}}", "steps": {{steps}}, "batch_size": 8, "checkpoint_every": 0, "log_every": 1, "model": """ +
        $$"""{ "hidden_size": 32, "depth": 1, "num_heads": 2, "patch_size": 4 } {{extra}} }""";

    private static async Task<string> Start(HttpClient client, string body)
    {
        var response = await client.PostAsync("/v1/admin/training/jobs", Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task After_a_restart_the_runs_are_listed_with_their_checkpoint_step_and_one_resumes_to_its_end()
    {
        string interrupted, finished;
        long stepAtStop;
        using (var first = Server())
        {
            var client = Admin(first);
            finished = await Start(client, Job("done", 3));
            await WaitForState(client, finished, "Succeeded");
            interrupted = await Start(client, Job("nested/long", 1_000_000));
            await WaitForState(client, interrupted, "Running");
            while ((await client.GetFromJsonAsync<JsonElement>($"/v1/admin/training/jobs/{interrupted}")).GetProperty("step").GetInt64() < 2)
                await Task.Delay(20);
        } // disposing the host stops it like SIGTERM: the job writes its checkpoint
        stepAtStop = TrainingCheckpoint.ReadInfo(Path.Combine(OutputRoot, "nested", "long", TrainingSession.CheckpointFile)).Step;
        Assert.True(stepAtStop >= 2);

        using var second = Server();
        var admin = Admin(second);
        var list = (await admin.GetFromJsonAsync<JsonElement>("/v1/admin/training/jobs")).EnumerateArray().ToList();
        var run = Assert.Single(list, j => j.GetProperty("id").GetString() == interrupted);
        Assert.Equal("Interrupted", run.GetProperty("state").GetString());
        Assert.Equal(stepAtStop, run.GetProperty("step").GetInt64());
        Assert.Equal("nested/long", run.GetProperty("output").GetString());
        var done = Assert.Single(list, j => j.GetProperty("id").GetString() == finished);
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());

        // Starting a new job in the same folder is refused with the way to resume it.
        var again = await admin.PostAsync("/v1/admin/training/jobs", Json(Job("nested/long", 5)));
        Assert.Equal(HttpStatusCode.BadRequest, again.StatusCode);
        Assert.Contains($"/v1/admin/training/jobs/{interrupted}/resume", await again.Content.ReadAsStringAsync());
        // Nothing left to do at the run's own count: 409; a lower total than reached: 409 too.
        Assert.Equal(HttpStatusCode.Conflict, (await admin.PostAsync($"/v1/admin/training/jobs/{finished}/resume", null)).StatusCode);
        Assert.Equal(HttpStatusCode.Conflict, (await admin.PostAsync($"/v1/admin/training/jobs/{interrupted}/resume", Json("""{"steps": 1}"""))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await admin.PostAsync("/v1/admin/training/jobs/nope/resume", null)).StatusCode);

        long target = stepAtStop + 3;
        var resumed = await admin.PostAsync($"/v1/admin/training/jobs/{interrupted}/resume", Json($$"""{"steps": {{target}}}"""));
        Assert.Equal(HttpStatusCode.Accepted, resumed.StatusCode);
        var end = await WaitForState(admin, interrupted, "Succeeded", "Failed");
        Assert.True(end.GetProperty("state").GetString() == "Succeeded", end.ToString());
        Assert.Equal(target, end.GetProperty("step").GetInt64());
        Assert.Equal(target, TrainingCheckpoint.ReadInfo(Path.Combine(OutputRoot, "nested", "long", TrainingSession.CheckpointFile)).Step);
        Assert.True(File.Exists(Path.Combine(OutputRoot, "nested", "long", "model.json")));
    }

    /// <summary>A served 1-channel 8×8 model and a finished fine-tuning job of it (same architecture).</summary>
    private async Task<(ServerFactory Server, HttpClient Client, string Job)> ServedAndTuned()
    {
        string modelDir = Path.Combine(Root, "served");
        RandomModel.Write(modelDir, new DiTConfig { InputSize = 8, PatchSize = 4, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = 2 },
            ["top", "bottom"]);
        var server = Server(modelDir);
        var client = Admin(server);
        var id = await Start(client,
            """{ "dataset": "bands", "output": "tune", "init_from": "served", "steps": 4, "batch_size": 8, "learning_rate": 0.01, "ema_decay": 0.5 }""");
        await WaitForState(client, id, "Succeeded");
        return (server, client, id);
    }

    private const string Request = """{ "class_label": 1, "steps": 5, "seed": 5, "cfg_scale": 2 }""";

    [Fact]
    public async Task Activating_a_damaged_checkpoint_is_422_and_a_missing_one_409_and_the_old_weights_keep_serving()
    {
        var (server, client, id) = await ServedAndTuned();
        using var _ = server;
        var before = await (await client.PostAsync("/v1/images", Json(Request))).Content.ReadAsByteArrayAsync();
        string ckpt = Path.Combine(OutputRoot, "tune", TrainingSession.CheckpointFile);

        // Cut off in the optimizer state (the models still read) and in the middle of the weights.
        var bytes = File.ReadAllBytes(ckpt);
        foreach (var length in new[] { bytes.Length * 3 / 4, bytes.Length / 4 })
        {
            File.WriteAllBytes(ckpt, bytes[..length]);
            var damaged = await client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null);
            var text = await damaged.Content.ReadAsStringAsync();
            Assert.True(damaged.StatusCode == HttpStatusCode.UnprocessableEntity, text);
            Assert.Equal("application/problem+json", damaged.Content.Headers.ContentType?.MediaType);
            Assert.Contains("truncated", text);
            Assert.Contains("previous weights keep serving", text);
        }
        // Garbage from the first byte: the header does not read either.
        File.WriteAllBytes(ckpt, Encoding.UTF8.GetBytes("not a checkpoint at all"));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, (await client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null)).StatusCode);
        File.Delete(ckpt);
        var missing = await client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null);
        Assert.Equal(HttpStatusCode.Conflict, missing.StatusCode);
        Assert.Contains("no checkpoint", await missing.Content.ReadAsStringAsync());

        var after = await (await client.PostAsync("/v1/images", Json(Request))).Content.ReadAsByteArrayAsync();
        Assert.Equal(before, after);
    }

    [Fact]
    public async Task Activations_leave_the_workers_live_tensors_at_their_baseline()
    {
        var (server, client, id) = await ServedAndTuned();
        using var _ = server;
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/images", Json(Request))).StatusCode);
        long baseline = server.Engine.Snapshot().WorkerLiveTensors;
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null)).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await client.PostAsync("/v1/images", Json(Request))).StatusCode); // the worker publishes its count
        }
        Assert.Equal(baseline, server.Engine.Snapshot().WorkerLiveTensors);
        var metrics = await client.GetStringAsync("/metrics");
        // The gauge as Prometheus reads it (one series per device): at the baseline too.
        Assert.Matches($@"(?m)^dit_worker_live_tensors(\{{[^}}]*\}})? {baseline}$", metrics);
    }

    [Theory]
    [InlineData("""{ "hidden_size": 8192, "depth": 64, "num_heads": 1, "patch_size": 4 }""", 8, "M parameters")]
    [InlineData("""{ "hidden_size": 32, "depth": 1, "num_heads": 2, "patch_size": 4 }""", 65536, "GiB")]
    public async Task A_model_or_batch_too_large_for_the_limits_is_400_before_anything_is_allocated(string model, int batch, string expected)
    {
        using var server = Server(null, ("Training:MaxMemoryBytes", "104857600"));
        var response = await Admin(server).PostAsync("/v1/admin/training/jobs",
            Json($$"""{ "dataset": "bands", "output": "big", "steps": 2, "batch_size": {{batch}}, "model": {{model}} }"""));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, text);
        Assert.Contains(expected, text);
        Assert.False(Directory.Exists(Path.Combine(OutputRoot, "big")));
    }

    [Fact]
    public async Task A_folder_of_class_subfolders_trains_with_image_size_and_its_class_names()
    {
        var shapes = Path.Combine(DataRoot, "shapes");
        foreach (var (cls, shade) in new[] { ("dark", (byte)30), ("light", (byte)220) })
        {
            Directory.CreateDirectory(Path.Combine(shapes, cls));
            for (int i = 0; i < 4; i++)
            {
                using var image = new SixLabors.ImageSharp.Image<SixLabors.ImageSharp.PixelFormats.L8>(12, 10,
                    new SixLabors.ImageSharp.PixelFormats.L8((byte)(shade + i)));
                SixLabors.ImageSharp.ImageExtensions.SaveAsPng(image, Path.Combine(shapes, cls, $"{i}.png"));
            }
        }
        using var server = Server();
        var client = Admin(server);
        var missing = await client.PostAsync("/v1/admin/training/jobs", Json("""{ "dataset": "shapes", "output": "s" }"""));
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
        Assert.Contains("image_size", await missing.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.BadRequest,
            (await client.PostAsync("/v1/admin/training/jobs", Json("""{ "dataset": "shapes", "output": "s", "image_size": 100000 }"""))).StatusCode);

        var id = await Start(client,
            """{ "dataset": "shapes", "output": "s", "image_size": 8, "channels": 1, "steps": 2, "batch_size": 4, "model": """ +
            """{ "hidden_size": 32, "depth": 1, "num_heads": 2, "patch_size": 4 } }""");
        var done = await WaitForState(client, id, "Succeeded", "Failed");
        Assert.True(done.GetProperty("state").GetString() == "Succeeded", done.ToString());
        using var exported = DiTServer.Core.Pipeline.LoadedModel.Load(Path.Combine(OutputRoot, "s"));
        Assert.Equal(("dark", "light"), (exported.Classes[0], exported.Classes[1]));
        Assert.Equal((1, 8), (exported.Config.InChannels, exported.Config.InputSize));
    }

    [Fact]
    public async Task A_link_inside_a_dataset_folder_that_leads_outside_is_400()
    {
        var outside = Directory.CreateTempSubdirectory("dit-outside-").FullName;
        try
        {
            SyntheticIdx.Write(outside, count: 16, side: 8, classes: 2);
            var sneaky = Path.Combine(DataRoot, "sneaky");
            Directory.CreateDirectory(sneaky);
            foreach (var file in Directory.GetFiles(outside)) File.CreateSymbolicLink(Path.Combine(sneaky, Path.GetFileName(file)), file);
            using var server = Server();
            var response = await Admin(server).PostAsync("/v1/admin/training/jobs", Json("""{ "dataset": "sneaky", "output": "x" }"""));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, text);
            Assert.Contains("link outside", text);
        }
        finally { Directory.Delete(outside, true); }
    }
}
