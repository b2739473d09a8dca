using System.Net;
using System.Text;
using System.Text.Json;
using DiTServer.Api.Cli;
using static DiTServer.Api.Tests.CliRun;

namespace DiTServer.Api.Tests;

/// <summary>Bounds at the door (issue 19): the same hostile values get 400 on every generation route before a job
/// exists (problem+json natively, OpenAI's error object on /v1/images/generations, exit 2 and one line on the CLI);
/// values at the edge of the bounds, a UTF-8 BOM and null for any optional field are accepted and give images.</summary>
public sealed class HostileValuesTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    private readonly HttpClient client = server.Factory.CreateClient();

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    /// <summary>Extra fields (after a valid class label), the field at fault, and a piece of its message.</summary>
    public static TheoryData<string, string, string> Hostile => new()
    {
        { "\"steps\": 0", "steps", "steps must be in 1..1000" },
        { "\"steps\": -5", "steps", "steps must be in 1..1000" },
        { "\"steps\": 1001", "steps", "steps must be in 1..1000" },
        { "\"steps\": 2147483648", "steps", "steps must be in 1..1000" },
        { "\"steps\": 1e3", "steps", "steps must be an integer" },
        { "\"steps\": 2.5", "steps", "steps must be an integer" },
        { "\"seed\": -1", "seed", "seed must be ≥ 0" },
        { "\"seed\": 9223372036854775808", "seed", "seed must be an integer" },
        { "\"seed\": 1e19", "seed", "seed must be an integer" },
        { "\"seed\": -9223372036854775808", "seed", "seed must be ≥ 0" },
        { "\"cfg_scale\": 0.999", "cfg_scale", "cfg_scale must be in 1..20" },
        { "\"cfg_scale\": 20.000001", "cfg_scale", "cfg_scale must be in 1..20" },
        { "\"cfg_scale\": -0.0", "cfg_scale", "cfg_scale must be in 1..20" },
        { "\"cfg_scale\": 1e309", "cfg_scale", "cfg_scale must be a number" },
        { "\"sampler\": \"ddim\", \"eta\": -0.01", "eta", "eta must be in 0..1" },
        { "\"sampler\": \"ddim\", \"eta\": 1.0000001", "eta", "eta must be in 0..1" },
        { "\"sampler\": \"ddim\", \"eta\": 1e309", "eta", "eta must be a number" },
        { "\"guidance_interval\": [0]", "guidance_interval", "two numbers" },
        { "\"guidance_interval\": [0, 1, 2]", "guidance_interval", "two numbers" },
        { "\"guidance_interval\": [700, 100]", "guidance_interval", "0 ≤ lo < hi ≤ 1000" },
        { "\"guidance_interval\": [-1, 100]", "guidance_interval", "0 ≤ lo < hi ≤ 1000" },
        { "\"guidance_interval\": [0, 1000.5]", "guidance_interval", "0 ≤ lo < hi ≤ 1000" },
        { "\"guidance_interval\": [0, 1e309]", "guidance_interval", "two numbers" },
        { "\"num_images\": 0", "num_images", "num_images must be in 1..8" },
        { "\"num_images\": 9", "num_images", "num_images must be in 1..8" },
        { "\"num_images\": -2147483649", "num_images", "num_images must be in 1..8" },
        { "\"sampler\": \"unipc\", \"order\": 4", "order", "order must be in 1..3" },
        { "\"sampler\": \"dpmpp_3m\", \"steps\": 2", "steps", "at least the solver's order (3)" },
        { "\"sampler\": \"\"", "sampler", "unknown sampler ''" },
    };

    /// <summary>A request body with the label and <paramref name="extra"/>, in the route's names.</summary>
    private static string Body(string route, string extra, int label = 1)
    {
        string labelField = route == "/v1/images/generations" ? "prompt" : "class_label";
        if (route == "/v1/images/generations") extra = extra.Replace("\"num_images\"", "\"n\"");
        return $$"""{"{{labelField}}": {{label}}{{(extra.Length > 0 ? ", " + extra : "")}}}""";
    }

    private static string Field(string route, string field) =>
        route == "/v1/images/generations" && field == "num_images" ? "n" : field;

    private static readonly string[] RouteList = ["/v1/images", "/v1/jobs", "/v1/images/generations"];

    public static TheoryData<string> Routes => new(RouteList);

    [Theory]
    [MemberData(nameof(Hostile))]
    public async Task Every_route_refuses_a_hostile_value_with_400_in_its_dialect_before_a_job_exists(string extra, string field, string message)
    {
        var before = server.Factory.Engine.Snapshot();
        foreach (var route in RouteList)
        {
            var response = await client.PostAsync(route, Json(Body(route, extra)));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{route} {extra}: {(int)response.StatusCode} {text}");
            Assert.Null(response.Headers.Location);
            var root = JsonDocument.Parse(text).RootElement;
            if (route == "/v1/images/generations")
            {
                var error = root.GetProperty("error");
                Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
                Assert.Equal(Field(route, field), error.GetProperty("param").GetString());
                Assert.Contains(message.Replace("num_images", "n"), error.GetProperty("message").GetString());
            }
            else
            {
                Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
                var messages = root.GetProperty("errors").GetProperty(field).EnumerateArray().Select(m => m.GetString()).ToList();
                Assert.True(messages.Any(m => m!.Contains(message)), $"{route} {extra}: {text}");
            }
        }
        var after = server.Factory.Engine.Snapshot();
        Assert.Equal(before.QueueDepth + before.ActiveRequests, after.QueueDepth + after.ActiveRequests);
    }

    /// <summary>Fields only one route has: the route, the body, the field at fault and a piece of its message.</summary>
    public static TheoryData<string, string, string, string> RouteOwn => new()
    {
        { "/v1/jobs", """{"class_label": 1, "steps": 4, "preview_every": 5}""", "preview_every", "1..4 (the job's steps)" },
        { "/v1/jobs", """{"class_label": 1, "steps": 4, "preview_every": -1}""", "preview_every", "must be 0 (no previews) or in 1..4" },
        { "/v1/jobs", """{"class_label": 1, "preview_every": 1e3}""", "preview_every", "must be an integer" },
        { "/v1/images/generations", """{"prompt": 1, "size": "16x16x"}""", "size", "the model's resolution" },
        { "/v1/images/generations", """{"prompt": 1, "size": "99999999999x99999999999"}""", "size", "the model's resolution" },
        { "/v1/images/generations", """{"prompt": 1, "size": 16}""", "size", "the model's resolution" },
        { "/v1/images/generations", """{"prompt": 1, "n": 100000}""", "n", "n must be in 1..8" },
        { "/v1/images/generations", """{"prompt": 1, "response_format": "file"}""", "response_format", "b64_json" },
    };

    [Theory]
    [MemberData(nameof(RouteOwn))]
    public async Task A_routes_own_fields_are_bounded_too(string route, string body, string field, string message)
    {
        var response = await client.PostAsync(route, Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{route} {body}: {(int)response.StatusCode} {text}");
        var root = JsonDocument.Parse(text).RootElement;
        if (route == "/v1/images/generations")
        {
            Assert.Equal(field, root.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains(message, root.GetProperty("error").GetProperty("message").GetString());
        }
        else Assert.Contains(root.GetProperty("errors").GetProperty(field).EnumerateArray(), m => m.GetString()!.Contains(message));
    }

    /// <summary>Values at the edge of every bound, which used to be accepted and then fail (DDIM eta 1 with 2 steps: 500).</summary>
    public static TheoryData<string> Edges => new()
    {
        "\"sampler\": \"ddim\", \"eta\": 1, \"steps\": 2",
        "\"sampler\": \"ddim\", \"eta\": 0.99999999, \"steps\": 2",
        "\"sampler\": \"ddim\", \"eta\": 1, \"steps\": 1, \"cfg_scale\": 20",
        "\"seed\": 9223372036854775807, \"steps\": 2",
        "\"cfg_scale\": 20, \"steps\": 3",
        "\"guidance_interval\": [0, 1000], \"steps\": 2",
        "\"sampler\": \"dpmpp_3m\", \"steps\": 3, \"cfg_scale\": 20",
        "\"sampler\": \"unipc\", \"order\": 3, \"steps\": 3, \"spacing\": \"logsnr\"",
    };

    [Theory]
    [MemberData(nameof(Edges))]
    public async Task Values_at_the_edge_of_the_bounds_give_images_on_every_route(string extra)
    {
        foreach (var route in RouteList)
            await AssertGenerates(route, Body(route, extra), extra);
    }

    [Theory]
    [MemberData(nameof(Routes))]
    public async Task A_utf8_bom_before_the_json_is_accepted(string route)
    {
        var bytes = new byte[] { 0xEF, 0xBB, 0xBF }.Concat(Encoding.UTF8.GetBytes(Body(route, "\"steps\": 2, \"seed\": 3"))).ToArray();
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new("application/json");
        await AssertGenerates(route, content, "BOM");
    }

    [Theory]
    [MemberData(nameof(Routes))]
    public async Task Null_is_absent_for_every_optional_field(string route)
    {
        string[] own = route switch
        {
            "/v1/images/generations" => ["n", "size", "response_format", "model", "user", "quality", "style", "moderation", "output_format", "background"],
            "/v1/jobs" => ["num_images", "preview_every"],
            _ => ["num_images"],
        };
        var optional = own.Concat(["cfg_scale", "seed", "sampler", "guidance", "eta", "spacing", "order", "unipc_variant", "guidance_interval",
            "thresholding"]);
        // steps stays set (2) so the test is fast; its null is tested alone.
        string extra = string.Join(", ", optional.Select(f => $"\"{f}\": null").Append("\"steps\": 2"));
        await AssertGenerates(route, Body(route, extra), "all nulls");
        var one = await client.PostAsync(route, Json(Body(route, "\"steps\": null, \"sampler\": \"dpmpp_2m\"")));
        Assert.True(one.IsSuccessStatusCode, $"{route} steps null: {(int)one.StatusCode} {await one.Content.ReadAsStringAsync()}");
        // A null eta with DDPM is absent, not "eta applies to the ddim sampler only".
        var eta = await client.PostAsync(route, Json(Body(route, "\"eta\": null, \"sampler\": \"ddpm\", \"steps\": 2")));
        Assert.True(eta.IsSuccessStatusCode, $"{route} eta null: {(int)eta.StatusCode} {await eta.Content.ReadAsStringAsync()}");
    }

    private Task AssertGenerates(string route, string body, string what) => AssertGenerates(route, Json(body), what);

    /// <summary>The route answers with images (the jobs route: a job that succeeds).</summary>
    private async Task AssertGenerates(string route, HttpContent body, string what)
    {
        var response = await client.PostAsync(route, body);
        var text = response.Content.Headers.ContentType?.MediaType == "image/png" ? "(png)" : await response.Content.ReadAsStringAsync();
        if (route != "/v1/jobs")
        {
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{route} {what}: {(int)response.StatusCode} {text}");
            return;
        }
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{route} {what}: {(int)response.StatusCode} {text}");
        string id = JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
        string state = "";
        for (int i = 0; i < 400 && state is not ("succeeded" or "failed" or "cancelled"); i++)
        {
            var status = JsonDocument.Parse(await client.GetStringAsync($"/v1/jobs/{id}")).RootElement;
            state = status.GetProperty("state").GetString()!;
            if (state is "queued" or "running") await server.Factory.WaitFor(s => s.ActiveRequests + s.QueueDepth == 0, "job finished");
        }
        Assert.True(state == "succeeded", $"{route} {what}: job {id} ended {state}");
    }

    /// <summary>The CLI shares <see cref="Core.Sampling.SamplingOptions.Validate"/>: the same bounds, one line and exit 2.</summary>
    [Theory]
    [InlineData("cfg_scale must be in 1..20", "--cfg", "21")]
    [InlineData("cfg_scale must be in 1..20", "--cfg", "NaN")]
    [InlineData("cfg_scale must be in 1..20", "--cfg", "Infinity")]
    [InlineData("seed must be ≥ 0", "--seed", "-1")]
    [InlineData("steps must be in 1..1000", "--steps", "1001")]
    [InlineData("steps must be in 1..1000", "--steps", "0")]
    [InlineData("guidance_interval", "--guidance-interval", "700,100")]
    [InlineData("eta must be in 0..1", "--eta", "1.5")]
    public async Task The_sample_verb_refuses_the_same_values_with_exit_2_and_one_line(string expected, string option, string value)
    {
        var dir = Directory.CreateTempSubdirectory("dit-hostile-").FullName;
        try
        {
            var (code, _, err) = await Run(WithOption(["sample", "--model", TestPaths.TinyModel, "--labels", "1", "--steps", "2", "--sampler", "ddim",
                "--out", dir], option, value));
            AssertUsageError(code, err, expected);
            Assert.Empty(Directory.GetFiles(dir));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public async Task The_sample_verb_gives_finite_images_with_ddim_eta_1_and_2_steps()
    {
        var dir = Directory.CreateTempSubdirectory("dit-hostile-").FullName;
        try
        {
            var (code, _, err) = await Run("sample", "--model", TestPaths.TinyModel, "--labels", "1,2", "--steps", "2", "--sampler", "ddim",
                "--eta", "1", "--out", dir);
            Assert.True(code == 0, err);
            Assert.Equal(2, Directory.GetFiles(dir, "*.png").Length);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
