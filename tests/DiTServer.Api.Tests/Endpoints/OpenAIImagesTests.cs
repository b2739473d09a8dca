using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>POST /v1/images/generations answers in OpenAI's shape (b64_json or job-result URLs) with the same
/// pixels as /v1/images, and refuses a wrong size and other mistakes with 400 in OpenAI's error shape.</summary>
public sealed class OpenAIImagesTests(OpenAIImagesTests.Server server) : IClassFixture<OpenAIImagesTests.Server>
{
    public sealed class Server() : ServerFixture(new(("Serving:MaxBatchRows", "16")));

    private readonly HttpClient client = server.Factory.CreateClient();

    private async Task<int> ImageSize() =>
        JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0].GetProperty("image_size").GetInt32();

    private async Task<List<byte[]>> Reference(int classLabel, int n)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images")
        {
            Content = Json($$"""{"class_label": {{classLabel}}, "num_images": {{n}}, "steps": 6, "cfg_scale": 4, "seed": 7}"""),
        };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var root = JsonDocument.Parse(await (await client.SendAsync(request)).Content.ReadAsStringAsync()).RootElement;
        return root.GetProperty("images").EnumerateArray().Select(i => Convert.FromBase64String(i.GetProperty("png_base64").GetString()!)).ToList();
    }

    private async Task<JsonElement> Generate(string body)
    {
        var response = await client.PostAsync("/v1/images/generations", Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    [Fact]
    public async Task B64_json_answer_has_openai_shape_and_the_pixels_of_v1_images()
    {
        int size = await ImageSize();
        var before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var root = await Generate($$"""{"model": "dall-e-2", "prompt": "3", "n": 2, "size": "{{size}}x{{size}}", "response_format": "b64_json", "seed": """ +
            $$"""7, "steps": 6, "cfg_scale": 4}""");
        Assert.InRange(root.GetProperty("created").GetInt64(), before, before + 60);
        var data = root.GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(2, data.Count);
        Assert.All(data, d => Assert.False(d.TryGetProperty("url", out _)));
        var expected = await Reference(3, 2);
        for (int i = 0; i < 2; i++)
            Assert.Equal(expected[i], Convert.FromBase64String(data[i].GetProperty("b64_json").GetString()!));
    }

    [Fact]
    public async Task Url_answer_points_at_job_results_that_serve_each_png()
    {
        var root = await Generate("""{"prompt": 5, "n": 2, "response_format": "url", "seed": 7, "steps": 6, "cfg_scale": 4}""");
        var data = root.GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(2, data.Count);
        var expected = await Reference(5, 2);
        for (int i = 0; i < 2; i++)
        {
            // Relative by default (no PublicUrls:BaseUrl, AllowedHosts "*"): the client resolves it against the URL it called.
            var text = data[i].GetProperty("url").GetString()!;
            Assert.StartsWith("/v1/jobs/", text);
            var url = new Uri(client.BaseAddress!, text);
            Assert.Matches($@"^/v1/jobs/job_[0-9a-f]{{32}}/result$", url.AbsolutePath);
            Assert.Equal($"?index={i}", url.Query);
            Assert.Equal(expected[i], await client.GetByteArrayAsync(url.PathAndQuery));
        }
    }

    [Theory]
    [InlineData("""{"prompt": "3", "size": "1024x1024"}""", "size", "the model's resolution")]
    [InlineData("""{"prompt": "3", "size": 16}""", "size", "the model's resolution")]
    [InlineData("""{"n": 1}""", "prompt", "prompt is required")]
    [InlineData("""{"prompt": ["3"]}""", "prompt", "prompt must be a string")]
    [InlineData("""{"prompt": "zebra"}""", "prompt", "unknown class 'zebra'")]
    [InlineData("""{"prompt": "3", "n": 0}""", "n", "n must be in 1..8")]
    [InlineData("""{"prompt": "3", "response_format": "png"}""", "response_format", "b64_json")]
    [InlineData("""{"prompt": "3", "negative_prompt": "x"}""", "negative_prompt", "unknown field")]
    [InlineData("""{"prompt": "3", "steps": 0}""", "steps", "steps must be in 1..1000")]
    [InlineData("[1]", null, "JSON object")]
    public async Task Bad_requests_are_400_openai_errors_naming_the_openai_field(string body, string? field, string expected)
    {
        var response = await client.PostAsync("/v1/images/generations", Json(body));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Equal(field, error.GetProperty("param").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains(expected, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task Errors_the_framework_writes_are_openai_errors_too()
    {
        // 415 comes from the body reader, not the parser; the route's filter translates it like any problem.
        var response = await client.PostAsync("/v1/images/generations", new StringContent("prompt=3", System.Text.Encoding.UTF8, "text/plain"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("unsupported_media_type", error.GetProperty("code").GetString());
    }
}
