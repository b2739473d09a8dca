using System.Text.Json;
using DiTServer.Api.Admin;

namespace DiTServer.Api.Tests;

/// <summary>The OpenAPI document lets Swagger's "Try it out" work on every endpoint: every POST that takes a body
/// documents it with a schema and an example (before, /v1/jobs and /v1/images/generations had none, so only an
/// empty body could be sent), and the admin routes declare their bearer scheme.</summary>
public sealed class OpenApiDocumentTests : IDisposable
{
    /// <summary>POSTs that take no body; any other POST without a documented body fails the test.</summary>
    private static readonly string[] Bodiless = ["ActivateTrainingJob"];

    private readonly string root = Directory.CreateTempSubdirectory("dit-openapi-").FullName;

    public void Dispose() => Directory.Delete(root, true);

    private async Task<JsonElement> Document()
    {
        // With an admin key, so the admin routes are mapped and checked too.
        using var factory = new ServerFactory(("Admin:ApiKeySha256", AdminKey.HashOf("k")), ("Training:DataRoot", root),
            ("Training:OutputRoot", Path.Combine(root, "runs")), ("Serving:WarmUp", "false"));
        var json = await factory.CreateClient().GetStringAsync("/swagger/v1/swagger.json");
        return JsonDocument.Parse(json).RootElement.Clone();
    }

    [Fact]
    public async Task Every_post_has_a_json_body_schema_and_an_example_that_fits_it()
    {
        var doc = await Document();
        var checkedIds = new List<string>();
        foreach (var path in doc.GetProperty("paths").EnumerateObject())
        {
            if (!path.Value.TryGetProperty("post", out var post)) continue;
            var id = post.GetProperty("operationId").GetString()!;
            if (Bodiless.Contains(id))
            {
                Assert.False(post.TryGetProperty("requestBody", out _), $"{id} is listed as bodiless but documents a body");
                continue;
            }
            Assert.True(post.TryGetProperty("requestBody", out var body), $"POST {path.Name} ({id}) has no request body");
            var content = body.GetProperty("content");
            // Uploads (OpenAI's edits and variations) are multipart forms; every other body is JSON.
            var json = content.TryGetProperty("application/json", out var j) ? j : content.GetProperty("multipart/form-data");
            Assert.True(json.TryGetProperty("schema", out var schema), $"{id}: no schema");
            Assert.True(json.TryGetProperty("example", out var example), $"{id}: no example");
            // Every field of the example is a property of the schema (a renamed field would otherwise rot silently).
            var properties = Resolve(doc, schema).GetProperty("properties");
            foreach (var field in example.EnumerateObject())
                Assert.True(properties.TryGetProperty(field.Name, out _), $"{id}: example field '{field.Name}' is not in the schema");
            checkedIds.Add(id);
        }
        Assert.Superset(new HashSet<string>
        {
            "GenerateImages", "CreateJob", "CreateImageOpenAI", "EditImageOpenAI", "CreateImageVariationOpenAI", "CreateTrainingJob",
        }, checkedIds.ToHashSet());
    }

    [Fact]
    public async Task Admin_routes_declare_the_bearer_scheme_and_public_routes_do_not()
    {
        var doc = await Document();
        var scheme = doc.GetProperty("components").GetProperty("securitySchemes").GetProperty("adminBearer");
        Assert.Equal("http", scheme.GetProperty("type").GetString());
        Assert.Equal("bearer", scheme.GetProperty("scheme").GetString());
        foreach (var path in doc.GetProperty("paths").EnumerateObject())
            foreach (var operation in path.Value.EnumerateObject())
            {
                bool secured = operation.Value.TryGetProperty("security", out var security)
                    && security.EnumerateArray().Any(r => r.TryGetProperty("adminBearer", out _));
                Assert.True(secured == path.Name.StartsWith("/v1/admin/", StringComparison.Ordinal), $"{operation.Name} {path.Name}: secured={secured}");
            }
    }

    [Fact]
    public async Task Without_an_admin_key_the_document_declares_no_security_scheme()
    {
        // Swagger UI shows "Authorize" whenever the document has a security scheme; without a key there is nothing to unlock.
        using var factory = new ServerFactory(("Serving:WarmUp", "false"));
        var doc = JsonDocument.Parse(await factory.CreateClient().GetStringAsync("/swagger/v1/swagger.json")).RootElement;
        bool declared = doc.TryGetProperty("components", out var components) && components.TryGetProperty("securitySchemes", out var schemes)
            && schemes.TryGetProperty("adminBearer", out _);
        Assert.False(declared, "adminBearer is declared although no admin route is mapped");
        Assert.DoesNotContain(doc.GetProperty("paths").EnumerateObject(), p => p.Name.StartsWith("/v1/admin/", StringComparison.Ordinal));
    }

    private static JsonElement Resolve(JsonElement doc, JsonElement schema)
    {
        if (!schema.TryGetProperty("$ref", out var reference)) return schema;
        var name = reference.GetString()!.Split('/').Last();
        return doc.GetProperty("components").GetProperty("schemas").GetProperty(name);
    }

    [Theory]
    [InlineData("/v1/images")]
    [InlineData("/v1/jobs")]
    public async Task Generation_bodies_offer_one_example_per_kind_of_sampler_and_each_is_accepted(string path)
    {
        using var factory = new ServerFactory(("Serving:WarmUp", "false"));
        var client = factory.CreateClient();
        var doc = JsonDocument.Parse(await client.GetStringAsync("/swagger/v1/swagger.json")).RootElement;
        var examples = doc.GetProperty("paths").GetProperty(path).GetProperty("post").GetProperty("requestBody")
            .GetProperty("content").GetProperty("application/json").GetProperty("examples");
        Assert.Equal(["ddpm", "dpmpp_2m", "unipc"], examples.EnumerateObject().Select(e => e.Name).Order());
        foreach (var example in examples.EnumerateObject())
        {
            // "Try it out" sends the example as it stands: the server must take it.
            var response = await client.PostAsync(path, JobsTestClient.Json(example.Value.GetProperty("value").GetRawText()));
            Assert.True(response.IsSuccessStatusCode,
                $"{path} example {example.Name}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
    }

    [Fact]
    public async Task Examples_and_descriptions_show_the_served_default_sampler_and_steps()
    {
        using var factory = new ServerFactory(("Serving:WarmUp", "false"));
        var client = factory.CreateClient();
        var model = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        string sampler = model.GetProperty("default_sampler").GetString()!;
        int steps = model.GetProperty("samplers").EnumerateArray().Single(s => s.GetProperty("name").GetString() == sampler)
            .GetProperty("default_steps").GetInt32();
        var doc = JsonDocument.Parse(await client.GetStringAsync("/swagger/v1/swagger.json")).RootElement;
        foreach (var path in new[] { "/v1/images", "/v1/jobs", "/v1/images/generations" })
        {
            var example = doc.GetProperty("paths").GetProperty(path).GetProperty("post").GetProperty("requestBody")
                .GetProperty("content").GetProperty("application/json").GetProperty("example");
            Assert.Equal((sampler, steps), (example.GetProperty("sampler").GetString(), example.GetProperty("steps").GetInt32()));
        }
        foreach (var schema in new[] { "ImageRequest", "JobRequest", "OpenAIImageRequest" })
        {
            var properties = doc.GetProperty("components").GetProperty("schemas").GetProperty(schema).GetProperty("properties");
            string samplerText = properties.GetProperty("sampler").GetProperty("description").GetString()!;
            string stepsText = properties.GetProperty("steps").GetProperty("description").GetString()!;
            Assert.Contains($"(this server: {sampler})", samplerText);
            Assert.Contains($"(this server: {steps} with its default sampler, {sampler})", stepsText);
            // No default of its own beside the served one (the OpenAI fields said "default 50" and "default ddpm").
            Assert.DoesNotMatch(@"default \d|default ddpm", samplerText + " " + stepsText);
        }
    }
}
