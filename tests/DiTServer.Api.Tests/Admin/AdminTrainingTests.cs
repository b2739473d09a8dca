using DiTServer.Core.Pipeline;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using DiTServer.Api.Admin;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Tests.Shared;
using static TorchSharp.torch;

namespace DiTServer.Api.Tests;

/// <summary>The admin training API: auth, path confinement, one job per device, and hot activation under load.</summary>
public class AdminTrainingTests() : AdminTestFolders("dit-admin-")
{
    private ServerFactory Server(string? model = null, bool withKey = true, StepGate? gate = null)
    {
        var settings = new List<(string, string)>
        {
            ("Training:DataRoot", DataRoot), ("Training:OutputRoot", OutputRoot), ("Serving:WarmUp", "false"),
        };
        if (withKey) settings.Add(("Admin:ApiKeySha256", AdminKey.HashOf(Key)));
        if (model is not null) settings.Add(("DiT:Model", model));
        return new ServerFactory(settings.ToArray()) { Gate = gate };
    }

    private static HttpClient Admin(ServerFactory server)
    {
        var client = server.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        return client;
    }

    private static string Job(string output, string extra = "") =>
        $$"""{ "dataset": "bands", "output": "{{output}}", "steps": 4, "batch_size": 8, "checkpoint_every": 2, "log_every": 1, "model": """ +
        $$"""{ "hidden_size": 32, "depth": 1, "num_heads": 2, "patch_size": 4 } {{extra}} }""";

    [Fact]
    public async Task Without_a_configured_key_the_routes_do_not_exist()
    {
        using var server = Server(withKey: false);
        var client = server.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v1/admin/training/jobs")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.PostAsync("/v1/admin/training/jobs", Json(Job("a")))).StatusCode);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer wrong-key")]
    [InlineData("Basic dGVzdC1hZG1pbi1rZXk=")]
    public async Task Missing_or_wrong_key_is_401_problem(string? authorization)
    {
        using var server = Server();
        var client = server.CreateClient();
        if (authorization is not null) client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", authorization);
        var response = await client.PostAsync("/v1/admin/training/jobs", Json(Job("a")));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("Bearer", response.Headers.WwwAuthenticate.ToString());
        Assert.False(Directory.Exists(Path.Combine(OutputRoot, "a")));
    }

    [Theory]
    [InlineData("GET", "/v1/admin/training/jobs")]
    [InlineData("GET", "/v1/admin/training/jobs/abc")]
    [InlineData("DELETE", "/v1/admin/training/jobs/abc")]
    [InlineData("POST", "/v1/admin/training/jobs/abc/activate")]
    [InlineData("POST", "/v1/admin/training/jobs/abc/resume")]
    public async Task Every_admin_route_is_401_problem_without_the_key(string method, string path)
    {
        using var server = Server();
        var client = server.CreateClient();
        var response = await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "Bearer wrong-key");
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path))).StatusCode);
    }

    [Fact]
    public async Task Right_key_starts_a_job_that_trains_checkpoints_and_exports()
    {
        using var server = Server();
        var client = Admin(server);
        var response = await client.PostAsync("/v1/admin/training/jobs", Json(Job("run1")));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        Assert.EndsWith($"/v1/admin/training/jobs/{id}", response.Headers.Location!.ToString());
        var done = await WaitForState(client, id, "Succeeded", "Failed");
        Assert.Equal("Succeeded", done.GetProperty("state").GetString());
        Assert.Equal(4, done.GetProperty("step").GetInt64());
        using var exported = LoadedModel.Load(Path.Combine(OutputRoot, "run1"));
        Assert.Equal(32, exported.Config.HiddenSize);
        var list = await client.GetFromJsonAsync<JsonElement>("/v1/admin/training/jobs");
        Assert.Contains(list.EnumerateArray(), j => j.GetProperty("id").GetString() == id);
    }

    [Theory]
    [InlineData("""{ "dataset": "../data/bands", "output": "x" }""", "'..'")]
    [InlineData("""{ "dataset": "/etc", "output": "x" }""", "outside the allowed folder")]
    [InlineData("""{ "dataset": "bands", "output": "/tmp/elsewhere" }""", "outside the allowed folder")]
    [InlineData("""{ "dataset": "missing", "output": "x" }""", "does not exist")]
    [InlineData("""{ "dataset": "bands" }""", "'output' is required")]
    [InlineData("""{ "dataset": "bands", "output": "x", "steps": 0 }""", "steps must be in 1..")]
    [InlineData("""{ "dataset": "bands", "output": "x", "model": { "conditioning": "film" } }""", "unknown conditioning")]
    [InlineData("""{ "dataset": "bands", "output": "x", "model": { "hidden_size": 30, "num_heads": 4 } }""", "multiple of num_heads")]
    [InlineData("""{ "dataset": "bands", "output": "x", "init_from": "elsewhere" }""", "init_from")]
    [InlineData("""{ "dataset": "bands", "output": "x", "bogus": 1 }""", "bogus")]
    [InlineData("""{ "dataset": "bands", "output": "x", "steps": "many" }""", "steps must be an integer")]
    [InlineData("""{ "dataset": "bands", "output": "x", "vae": "../vae" }""", "'..'")]
    [InlineData("""{ "dataset": "bands", "output": "x", "vae": "/etc" }""", "outside the allowed folder")]
    [InlineData("""{ "dataset": "bands", "output": "x", "vae": "missing-vae" }""", "does not exist under the data root")]
    [InlineData("""{ "dataset": "bands", "output": "x", "vae": "bands" }""", "cannot be used")]
    [InlineData("""{ "dataset": "bands9", "output": "x", "vae": "vae-tiny" }""", "not divisible by the VAE's downsampling factor 2")]
    [InlineData("""{ "dataset": "bands", "output": "x", "init_from": "served", "vae": "vae-tiny" }""", "leave out 'vae'")]
    [InlineData("""{ "dataset": """, "malformed JSON")]
    [InlineData("""{ "output": "x" }""", "'dataset' is required")]
    [InlineData("""{ "distill_from": "elsewhere", "output": "x" }""", "distill_from must be \\\"served\\\"")]
    [InlineData("""{ "distill_from": "served", "output": "x", "student_steps": 3 }""", "student_steps must be one of 1, 2, 4")]
    [InlineData("""{ "distill_from": "served", "output": "x", "student_steps": 4, "teacher_steps": 6 }""", "teacher_steps must be a multiple")]
    [InlineData("""{ "distill_from": "served", "output": "x", "teacher_steps": 10 }""", "teacher_steps must be a multiple of student_steps (4)")]
    [InlineData("""{ "distill_from": "served", "output": "x", "trajectories": 0 }""", "trajectories must be in 1..")]
    [InlineData("""{ "distill_from": "served", "output": "x", "guidance_range": [6, 2] }""", "guidance_range must be [lo, hi]")]
    [InlineData("""{ "distill_from": "served", "output": "x", "guidance_range": [1] }""", "guidance_range must be [lo, hi]")]
    [InlineData("""{ "distill_from": "served", "output": "x", "dataset": "bands" }""", "dataset does not apply to a distillation")]
    [InlineData("""{ "distill_from": "served", "output": "x", "init_from": "served" }""", "init_from does not apply to a distillation")]
    [InlineData("""{ "dataset": "bands", "output": "x", "student_steps": 2 }""", "student_steps applies to a distillation only")]
    public async Task Bad_jobs_are_400_problem(string body, string expected)
    {
        CopyVae();
        SyntheticIdx.Write(Path.Combine(DataRoot, "bands9"), count: 8, side: 9, classes: 2);
        using var server = Server();
        var response = await Admin(server).PostAsync("/v1/admin/training/jobs", Json(body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains(expected, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Distill_from_served_makes_a_student_of_the_served_model_with_its_vae()
    {
        using var server = Server();
        var client = Admin(server);
        var response = await client.PostAsync("/v1/admin/training/jobs", Json("""
            { "distill_from": "served", "output": "student", "student_steps": 2, "teacher_steps": 2, "trajectories": 8, "steps": 2, "batch_size": 4 }
            """));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        var done = await WaitForState(client, id, "Succeeded", "Failed");
        Assert.True(done.GetProperty("state").GetString() == "Succeeded", done.ToString());
        using var student = LoadedModel.Load(Path.Combine(OutputRoot, "student"));
        using var teacher = LoadedModel.Load(TestPaths.TinyModel);
        Assert.True(student.Config.GuidanceConditioned);
        Assert.Equal(teacher.Config with { GuidanceConditioned = true }, student.Config);
        Assert.Equal(teacher.Manifest.VaePath, student.Manifest.VaePath);
        Assert.Equal(teacher.Name, student.Manifest.DistilledFrom);
        // A student is another architecture: it is served by restarting on its export, not hot-swapped into the teacher.
        var activate = await client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null);
        Assert.Equal(HttpStatusCode.Conflict, activate.StatusCode);
        Assert.Contains("DiT__Model", await activate.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_distillation_whose_trajectories_exceed_the_memory_limit_is_400_before_any_work()
    {
        using var server = new ServerFactory(("Training:DataRoot", DataRoot), ("Training:OutputRoot", OutputRoot), ("Serving:WarmUp", "false"),
            ("Admin:ApiKeySha256", AdminKey.HashOf(Key)), ("Training:MaxMemoryBytes", (1L << 30).ToString()));
        // 65,536 trajectories of 65 states of 4×8×8 floats: 4.4 GB of trajectories, for a student whose training alone fits.
        var response = await Admin(server).PostAsync("/v1/admin/training/jobs",
            Json("""{ "distill_from": "served", "output": "big", "trajectories": 65536, "teacher_steps": 64, "batch_size": 4 }"""));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("of them trajectories", await response.Content.ReadAsStringAsync());
        Assert.False(Directory.Exists(Path.Combine(OutputRoot, "big")));
    }

    /// <summary>The fixture VAE under the data root, where a job's <c>vae</c> may name it.</summary>
    private void CopyVae()
    {
        string to = Path.Combine(DataRoot, "vae-tiny");
        Directory.CreateDirectory(to);
        foreach (var file in new[] { "config.json", "diffusion_pytorch_model.safetensors" })
            File.Copy(FixturePaths.Of(Path.Combine("vae-tiny", file)), Path.Combine(to, file), overwrite: true);
    }

    [Fact]
    public async Task A_job_with_a_vae_trains_on_latents_and_exports_a_model_that_decodes_with_it()
    {
        CopyVae();
        using var server = Server();
        var client = Admin(server);
        var response = await client.PostAsync("/v1/admin/training/jobs", Json(Job("latent", """, "vae": "vae-tiny" """)));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        var done = await WaitForState(client, id, "Succeeded", "Failed");
        Assert.True(done.GetProperty("state").GetString() == "Succeeded", done.ToString());
        Assert.True(File.Exists(Path.Combine(OutputRoot, "latent", "latents.cache")));
        using var exported = LoadedModel.Load(Path.Combine(OutputRoot, "latent"));
        Assert.Equal(Path.Combine(DataRoot, "vae-tiny"), exported.Manifest.VaePath);
        Assert.Equal((4, 4, 8), (exported.Config.InChannels, exported.Config.InputSize, exported.ImageSize));
        // The served pixel-space model cannot take these weights: activation says so instead of decoding noise.
        Assert.Equal(HttpStatusCode.Conflict, (await client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null)).StatusCode);
    }

    [Fact]
    public async Task Symlinked_dataset_pointing_outside_is_400()
    {
        var outside = Directory.CreateTempSubdirectory("dit-outside-").FullName;
        try
        {
            SyntheticIdx.Write(outside, count: 16, side: 8, classes: 2);
            Directory.CreateSymbolicLink(Path.Combine(DataRoot, "sneaky"), outside);
            using var server = Server();
            var response = await Admin(server).PostAsync("/v1/admin/training/jobs", Json("""{ "dataset": "sneaky", "output": "x" }"""));
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Contains("link outside", await response.Content.ReadAsStringAsync());
        }
        finally { Directory.Delete(outside, true); }
    }

    [Fact]
    public async Task Second_job_while_one_runs_is_409_and_cancel_keeps_the_checkpoint()
    {
        using var server = Server();
        var client = Admin(server);
        var first = await client.PostAsync("/v1/admin/training/jobs", Json(Job("long").Replace("\"steps\": 4", "\"steps\": 100000")));
        var id = (await first.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        var second = await client.PostAsync("/v1/admin/training/jobs", Json(Job("other")));
        Assert.Equal(HttpStatusCode.Conflict, second.StatusCode);
        Assert.Equal("application/problem+json", second.Content.Headers.ContentType?.MediaType);

        Assert.Equal(HttpStatusCode.Accepted, (await client.DeleteAsync($"/v1/admin/training/jobs/{id}")).StatusCode);
        var cancelled = await WaitForState(client, id, "Cancelled", "Failed");
        Assert.Equal("Cancelled", cancelled.GetProperty("state").GetString());
        Assert.True(File.Exists(Path.Combine(OutputRoot, "long", "checkpoint.ckpt")));
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v1/admin/training/jobs/nope")).StatusCode);
        // The device is free again.
        Assert.Equal(HttpStatusCode.Accepted, (await client.PostAsync("/v1/admin/training/jobs", Json(Job("after")))).StatusCode);
    }

    [Fact]
    public async Task Activate_swaps_the_served_weights_while_requests_run_and_none_fails()
    {
        // A served 1-channel 8×8 pixel model, so a job on the synthetic bands can fine-tune it (same architecture).
        string modelDir = Path.Combine(Root, "served");
        RandomModel.Write(modelDir, new DiTConfig { InputSize = 8, PatchSize = 4, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = 2 },
            ["top", "bottom"]);
        var gate = new StepGate(open: true);
        using var server = Server(modelDir, gate: gate);
        var client = Admin(server);
        const string body = """{ "class_label": 1, "steps": 150, "seed": 5, "cfg_scale": 2 }""";
        var before = await (await client.PostAsync("/v1/images", Json(body))).Content.ReadAsByteArrayAsync();

        var job = await client.PostAsync("/v1/admin/training/jobs",
            Json("""{ "dataset": "bands", "output": "tune", "init_from": "served", "steps": 20, "batch_size": 8, "learning_rate": """ +
                 """0.01, "ema_decay": 0.5, "checkpoint_every": 10 }"""));
        Assert.Equal(HttpStatusCode.Accepted, job.StatusCode);
        var id = (await job.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        await WaitForState(client, id, "Succeeded");

        // Held after each forward until all four run, so none can finish before the others are admitted, on any machine.
        gate.Close();
        var running = Enumerable.Range(0, 4).Select(_ => client.PostAsync("/v1/images", Json(body))).ToList();
        await server.WaitFor(s => s.ActiveRequests + s.QueueDepth == 4, "all four requests accepted");
        await server.StepUntil(s => s.ActiveRequests == 4, "all four requests running");
        // Two activations of the same job: the engine takes one swap at a time, so whichever reaches it second is refused
        // (409, "still in progress") while the other waits for the four, which the closed gate keeps running. That
        // refusal is the proof that a swap is pending while they run; no sleep, no assumption about speed.
        var attempts = new[] { Activate(client, id), Activate(client, id) };
        var refused = await await Task.WhenAny(attempts);
        var pending = attempts.Single(a => a.Status != TaskStatus.RanToCompletion || a.Result != refused);
        Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        Assert.Contains("still in progress", await refused.Content.ReadAsStringAsync());
        Assert.False(pending.IsCompleted, "the activation finished while the four requests were still held");
        Assert.Equal(4, server.Engine.Snapshot().ActiveRequests);
        gate.Open();
        var activation = await pending;
        Assert.Equal(HttpStatusCode.OK, activation.StatusCode);
        foreach (var r in running)
        {
            var response = await r;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            // They were admitted before the swap, so they finished on the old weights.
            Assert.Equal(before, await response.Content.ReadAsByteArrayAsync());
        }
        var after = await (await client.PostAsync("/v1/images", Json(body))).Content.ReadAsByteArrayAsync();
        Assert.NotEqual(before, after);
    }

    private static Task<HttpResponseMessage> Activate(HttpClient client, string id) => client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null);

    [Fact]
    public async Task Activating_a_different_architecture_is_409()
    {
        using var server = Server();
        var client = Admin(server);
        var job = await client.PostAsync("/v1/admin/training/jobs", Json(Job("other-arch")));
        var id = (await job.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        await WaitForState(client, id, "Succeeded");
        var response = await client.PostAsync($"/v1/admin/training/jobs/{id}/activate", null);
        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Contains("different architecture", await response.Content.ReadAsStringAsync());
    }
}
