using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using DiTServer.Api.Admin;

namespace DiTServer.Api.Tests;

/// <summary>Every number and string of an admin training job is checked at the door: refused with 400 problem+json that
/// names the field, before any job or folder exists (issue 19, item 5: <c>steps: 1e15</c> and a 300-character output were
/// answered 202, then failed on the job's thread).</summary>
public class AdminBoundsTests() : AdminTestFolders("dit-admin-bounds-")
{
    private ServerFactory Server() => new(
        [("Training:DataRoot", DataRoot), ("Training:OutputRoot", OutputRoot), ("Serving:WarmUp", "false"), ("Admin:ApiKeySha256", AdminKey.HashOf(Key))]);

    private static HttpClient Admin(ServerFactory server)
    {
        var client = server.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        return client;
    }

    private static readonly string LongName = new('a', 300);

    public static TheoryData<string, string> BadFields() => new()
    {
        { """ "steps": 1e15 """, "steps" },
        { """ "steps": 1000000000000000 """, "steps" },
        { """ "steps": -1 """, "steps" },
        { """ "batch_size": 0 """, "batch_size" },
        { """ "batch_size": 10000000 """, "batch_size" },
        { """ "batch_size": 2.5 """, "batch_size" },
        { """ "learning_rate": 0 """, "learning_rate" },
        { """ "learning_rate": 1e300 """, "learning_rate" },
        { """ "ema_decay": 1.5 """, "ema_decay" },
        { """ "seed": -3 """, "seed" },
        { """ "class_dropout_prob": 1 """, "class_dropout_prob" },
        { """ "checkpoint_every": -1 """, "checkpoint_every" },
        { """ "log_every": 0 """, "log_every" },
        { """ "image_size": 0 """, "image_size" },
        { """ "channels": 2 """, "channels" },
        { """ "init_from": "elsewhere" """, "init_from" },
        { $$""" "name": "{{LongName}}" """, "name" },
        { """ "name": "a\u0007b" """, "name" },
        { """ "class_names": [] """, "class_names" },
        { $$""" "class_names": ["a", "{{LongName}}"] """, "class_names" },
        { """ "model": { "hidden_size": 1048576 } """, "model.hidden_size" },
        { """ "model": { "depth": 0 } """, "model.depth" },
        { """ "model": { "patch_size": 1000 } """, "model.patch_size" },
        { """ "model": { "conditioning": "film" } """, "model.conditioning" },
        { """ "model": 3 """, "model" },
        { """ "vae": "a/../b" """, "vae" },
    };

    [Theory]
    [MemberData(nameof(BadFields))]
    public async Task A_bad_field_is_400_naming_it_and_no_job_or_folder_exists(string field, string name)
    {
        using var server = Server();
        var client = Admin(server);
        var response = await client.PostAsync("/v1/admin/training/jobs", Json($$"""{ "dataset": "bands", "output": "x", {{field}} }"""));
        await AssertRefused(response, name);
        Assert.False(Directory.Exists(Path.Combine(OutputRoot, "x")));
        Assert.Empty((await client.GetFromJsonAsync<JsonElement>("/v1/admin/training/jobs")).EnumerateArray());
    }

    public static TheoryData<string> BadOutputs() =>
    [
        new string('o', 300),                                  // one folder name past NAME_MAX
        string.Join('/', Enumerable.Repeat(new string('o', 60), 5)), // 304 bytes in all
        ".",
        "./",
        "..",
        "../..",
        "a/./b",
        "",
        "   ",
        "a/b/c/d/e/f/g/h/i",                                   // deeper than runs are listed
        "tab\there",
    ];

    [Theory]
    [MemberData(nameof(BadOutputs))]
    public async Task A_bad_output_is_400_naming_output(string output)
    {
        using var server = Server();
        var client = Admin(server);
        var body = JsonSerializer.Serialize(new { dataset = "bands", output, steps = 2 });
        await AssertRefused(await client.PostAsync("/v1/admin/training/jobs", Json(body)), "output");
        Assert.Empty(Directory.EnumerateFileSystemEntries(OutputRoot));
    }

    [Fact]
    public async Task Null_is_absent_for_an_optional_field_and_the_deepest_output_is_accepted()
    {
        using var server = Server();
        var client = Admin(server);
        var output = string.Join('/', Enumerable.Range(0, TrainingJobRequestValidator.MaxOutputDepth).Select(i => $"d{i}"));
        var response = await client.PostAsync("/v1/admin/training/jobs", Json(
            $$"""{ "dataset": "bands", "output": "{{output}}", "steps": 1, "batch_size": null, "seed": null, "learning_rate": null, "name": null, """ +
            """ "log_every": 1, "model": { "hidden_size": 32, "depth": 1, "num_heads": 2, "patch_size": 4 } }"""));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, text);
        var id = JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
        Assert.Equal("Succeeded", (await WaitForState(client, id, "Succeeded", "Failed")).GetProperty("state").GetString());
    }

    [Fact]
    public async Task A_resume_with_an_endless_step_count_is_400()
    {
        using var server = Server();
        var client = Admin(server);
        // The id is unknown: the 404 comes first. A known run is needed for the bound, so make one of 1 step.
        var start = await client.PostAsync("/v1/admin/training/jobs", Json(
            """{ "dataset": "bands", "output": "r", "steps": 1, "log_every": 1, """ +
            """ "model": { "hidden_size": 32, "depth": 1, "num_heads": 2, "patch_size": 4 } }"""));
        var id = (await start.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!;
        await WaitForState(client, id, "Succeeded", "Failed");
        await AssertRefused(await client.PostAsync($"/v1/admin/training/jobs/{id}/resume", Json("""{ "steps": 1000000000000000 }""")), "steps");
    }

    private static async Task AssertRefused(HttpResponseMessage response, string field)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var errors = JsonDocument.Parse(text).RootElement.GetProperty("errors");
        Assert.True(errors.TryGetProperty(field, out _), text);
    }
}
