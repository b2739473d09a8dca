using System.Text.Json;
using System.Text.Json.Nodes;
using DiTServer.Core.Imaging;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>A model that declares a feature-caching default for long DDIM runs (model.json <c>default_cache</c>): the
/// server applies it to the requests it names and to no other, a request's own <c>cache_interval</c> wins, and
/// <c>GET /v1/models</c>, Swagger's description and the CLI say and do the same, all read from the manifest.</summary>
public sealed class CacheDefaultApiTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("dit-cache-default-").FullName;
    private readonly ServerFactory factory;

    public CacheDefaultApiTests()
    {
        // The fixtures' tiny model with a cache default: taylor on every 3rd step for DDIM from 6 steps on.
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(TestPaths.TinyModel, "model.json")))!.AsObject();
        manifest["weights"] = TestPaths.Fixture("dit-tiny/model.pt");
        manifest["vae"] = TestPaths.Fixture("vae-tiny");
        manifest["default_cache"] = new JsonObject { ["interval"] = 3, ["mode"] = "taylor", ["min_steps"] = 6 };
        File.WriteAllText(Path.Combine(dir, "model.json"), manifest.ToJsonString());
        factory = new ServerFactory(("Serving:WarmUp", "false"), ("DiT:Model", dir));
    }

    public void Dispose()
    {
        factory.Dispose();
        Directory.Delete(dir, true);
    }

    [Fact]
    public async Task Long_ddpm_and_ddim_requests_without_cache_interval_get_the_models_default_and_a_request_that_asks_wins()
    {
        var client = factory.CreateClient();
        var model = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        var advertised = model.GetProperty("default_cache");
        Assert.Equal((3, "taylor", 6), (advertised.GetProperty("interval").GetInt32(), advertised.GetProperty("mode").GetString(),
            advertised.GetProperty("min_steps").GetInt32()));
        Assert.Equal(["ddim"], advertised.GetProperty("samplers").EnumerateArray().Select(s => s.GetString()));

        const string ddim = "\"class_label\": 1, \"seed\": 7, \"sampler\": \"ddim\"";
        var implicitPng = await Png(client, $$"""{{{ddim}}, "steps": 6}""");
        var text = PngWriter.ReadText(implicitPng);
        Assert.Equal(("3", "taylor"), (text["cache_interval"], text["cache_mode"]));
        Assert.Equal(implicitPng, await Png(client, $$"""{{{ddim}}, "steps": 6, "cache_interval": 3, "cache_mode": "taylor"}"""));

        var off = await Png(client, $$"""{{{ddim}}, "steps": 6, "cache_interval": 1}""");
        Assert.False(PngWriter.ReadText(off).ContainsKey("cache_interval"));
        Assert.NotEqual(implicitPng, off);
        Assert.Equal("reuse", PngWriter.ReadText(await Png(client, $$"""{{{ddim}}, "steps": 6, "cache_interval": 2}"""))["cache_mode"]);
        Assert.Equal("reuse", PngWriter.ReadText(await Png(client, $$"""{{{ddim}}, "steps": 6, "cache_mode": "reuse"}"""))["cache_mode"]);

        // Too few steps, DDPM or a solver: uncached.
        Assert.False(PngWriter.ReadText(await Png(client, $$"""{{{ddim}}, "steps": 5}""")).ContainsKey("cache_interval"));
        Assert.False(PngWriter.ReadText(await Png(client, """{"class_label": 1, "sampler": "ddpm", "steps": 8}""")).ContainsKey("cache_interval"));
        Assert.False(PngWriter.ReadText(await Png(client, """{"class_label": 1, "sampler": "unipc", "steps": 8}""")).ContainsKey("cache_interval"));

        // Swagger says what a request without cache_interval gets here.
        var doc = JsonDocument.Parse(await client.GetStringAsync("/swagger/v1/swagger.json")).RootElement;
        foreach (var schema in new[] { "ImageRequest", "JobRequest", "OpenAIImageRequest" })
            Assert.Contains("(this server, when absent: cache_interval 3, cache_mode taylor for ddim with at least 6 steps; 1 otherwise)",
                doc.GetProperty("components").GetProperty("schemas").GetProperty(schema).GetProperty("properties").GetProperty("cache_interval")
                    .GetProperty("description").GetString());
    }

    [Fact]
    public async Task A_model_without_a_cache_default_lists_none_and_caches_nothing_unasked()
    {
        using var plain = new ServerFactory(("Serving:WarmUp", "false"));
        var client = plain.CreateClient();
        var model = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        Assert.False(model.TryGetProperty("default_cache", out _));
        Assert.False(PngWriter.ReadText(await Png(client, """{"class_label": 1, "sampler": "ddpm", "steps": 50}""")).ContainsKey("cache_interval"));
        var doc = JsonDocument.Parse(await client.GetStringAsync("/swagger/v1/swagger.json")).RootElement;
        Assert.Contains("(this server, when absent: 1 for every sampler)", doc.GetProperty("components").GetProperty("schemas")
            .GetProperty("ImageRequest").GetProperty("properties").GetProperty("cache_interval").GetProperty("description").GetString());
    }

    [Fact]
    public async Task The_sample_verb_applies_the_same_default_and_its_flag_wins()
    {
        string Out(string name) => Path.Combine(dir, name);
        foreach (var (name, extra) in new[] { ("implicit", Array.Empty<string>()), ("off", new[] { "--cache-interval", "1" }) })
        {
            var stderr = new StringWriter();
            int code = await Cli.CommandLine.RunAsync(["sample", "--model", dir, "--labels", "1", "--sampler", "ddim", "--steps", "6",
                "--seed", "7", "--out", Out(name), .. extra], new StringWriter(), stderr);
            Assert.True(code == 0, stderr.ToString());
        }
        var implicitText = PngWriter.ReadText(File.ReadAllBytes(Directory.GetFiles(Out("implicit"), "*.png").Single()));
        Assert.Equal(("3", "taylor"), (implicitText["cache_interval"], implicitText["cache_mode"]));
        Assert.False(PngWriter.ReadText(File.ReadAllBytes(Directory.GetFiles(Out("off"), "*.png").Single())).ContainsKey("cache_interval"));
    }

    private static async Task<byte[]> Png(HttpClient client, string body)
    {
        var response = await client.PostAsync("/v1/images", Json(body));
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        return await response.Content.ReadAsByteArrayAsync();
    }
}
