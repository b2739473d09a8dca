using DiTServer.Bench.Evidence;
using System.Net;
using System.Text;
using System.Text.Json;

namespace DiTServer.Api.Tests;

/// <summary>Every malformed, mistyped, missing, out-of-range or oversize input is a 400 problem+json naming the mistake.</summary>
public sealed class BadRequestTests(ServerFixture server) : IClassFixture<ServerFixture>
{
    public static TheoryData<string, string> Cases => new()
    {
        { "", "body is empty" },
        { "{", "malformed JSON" },
        { "not json", "malformed JSON" },
        { """{"class_label": 1,}""", "malformed JSON" },
        { """{"class_label": 1 /* c */}""", "malformed JSON" },
        { """{"class_label": [[[[[[[[[[1]]]]]]]]]]}""", "malformed JSON" },
        { "[]", "must be a JSON object" },
        { "3", "must be a JSON object" },
        { "null", "must be a JSON object" },
        { "{}", "class_label is required" },
        { """{"class_label": null}""", "class_label is required" },
        { """{"class_label": 12}""", "out of range 0..9" },
        { """{"class_label": -1}""", "out of range 0..9" },
        { """{"class_label": 1.5}""", "integer class index" },
        { """{"class_label": 1e40}""", "integer class index" },
        { """{"class_label": true}""", "not a boolean" },
        { """{"class_label": [1]}""", "not an array" },
        { """{"class_label": {}}""", "not an object" },
        { """{"class_label": "zebra"}""", "unknown class 'zebra'" },
        { """{"class_label": "  "}""", "class_label is empty" },
        { """{"class_label": "\ud800"}""", "not valid Unicode text" },
        { """{"class_label": 1, "guidance": "\uDFFF\uD800"}""", "not valid Unicode text" },
        { """{"class_label": 1, "num_images": 0}""", "num_images must be in 1..8" },
        { """{"class_label": 1, "num_images": 9}""", "num_images must be in 1..8" },
        { """{"class_label": 1, "num_images": "2"}""", "num_images must be an integer" },
        { """{"class_label": 1, "num_images": 1.5}""", "num_images must be an integer" },
        { """{"class_label": 1, "steps": 0}""", "steps must be in 1..1000" },
        { """{"class_label": 1, "steps": 1001}""", "steps must be in 1..1000" },
        { """{"class_label": 1, "steps": "fifty"}""", "steps must be an integer" },
        { """{"class_label": 1, "steps": true}""", "steps must be an integer" },
        { """{"class_label": 1, "cfg_scale": 0.5}""", "cfg_scale must be in 1..20" },
        { """{"class_label": 1, "cfg_scale": 21}""", "cfg_scale must be in 1..20" },
        { """{"class_label": 1, "cfg_scale": "4"}""", "cfg_scale must be a number" },
        { """{"class_label": 1, "seed": -1}""", "seed must be ≥ 0" },
        { """{"class_label": 1, "seed": 1.5}""", "seed must be an integer" },
        { """{"class_label": 1, "seed": 9223372036854775808}""", "seed must be an integer" },
        { """{"class_label": 1, "seed": "42"}""", "seed must be an integer" },
        { """{"class_label": 1, "sampler": "euler"}""", "unknown sampler 'euler'; use ddpm, ddim, dpmpp_2m, dpmpp_3m or unipc" },
        { """{"class_label": 1, "sampler": 1}""", "sampler must be a string" },
        { """{"class_label": 1, "guidance": "some"}""", "unknown guidance 'some'" },
        { """{"class_label": 1, "eta": 0.5}""", "eta applies to the ddim sampler only" },
        { """{"class_label": 1, "sampler": "ddim", "eta": 2}""", "eta must be in 0..1" },
        { """{"class_label": 1, "stepz": 10}""", "unknown field 'stepz'" },
        { """{"class_label": 1, "class_label": 2}""", "appears more than once" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_input_is_400_problem_json_with_a_useful_detail(string body, string expected)
    {
        var client = server.Factory.CreateClient();
        var response = await client.PostAsync("/v1/images", new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal(400, problem.GetProperty("status").GetInt32());
        Assert.Contains(expected, problem.GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("/v1/images")]
    [InlineData("/v1/jobs")]
    [InlineData("/v1/images/generations")]
    public async Task A_body_over_the_limit_is_413_problem_json(string path)
    {
        var client = server.Factory.CreateClient();
        // Automatic by default: room for two PNGs of the model's size (Serving:MaxBodyBytes 0), shown by /v1/models.
        int limit = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0]
            .GetProperty("limits").GetProperty("max_body_bytes").GetInt32();
        var body = "{\"class_label\": 1, \"pad\": \"" + new string('x', limit) + "\"}";
        var response = await client.PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.True(BadInputFuzzer.IsErrorBody(path, 413, response.Content.Headers.ContentType?.MediaType, text), text);
        Assert.Contains($"larger than {limit} bytes", text);
    }

    [Theory]
    [InlineData("/v1/images")]
    [InlineData("/v1/jobs")]
    [InlineData("/v1/images/generations")]
    public async Task Hundreds_of_unknown_fields_give_a_small_problem(string path)
    {
        // 800 unknown fields: each used to get its own message listing every known field (250 KB for 900).
        var body = "{" + string.Join(",", Enumerable.Range(0, 800).Select(i => $"\"u{i}\":0")) + "}";
        var response = await server.Factory.CreateClient().PostAsync(path, new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.True(text.Length < 12_000, $"{text.Length} bytes");
        Assert.Contains("more field(s) with errors are not listed", text);
        var root = JsonDocument.Parse(text).RootElement;
        if (root.TryGetProperty("errors", out var errors)) Assert.True(errors.EnumerateObject().Count() <= 21); // problem+json; OpenAI's object has one message
    }

    [Fact]
    public async Task Unknown_class_name_suggests_close_names()
    {
        // The tiny model's classes are named "0".."9"; a near-miss of a name gets suggestions from ClassNames.Suggest.
        var client = server.Factory.CreateClient();
        var response = await client.PostAsync("/v1/images", new StringContent("""{"class_label": "1x"}""", Encoding.UTF8, "application/json"));
        var detail = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString();
        Assert.Contains("did you mean", detail);
    }
}
