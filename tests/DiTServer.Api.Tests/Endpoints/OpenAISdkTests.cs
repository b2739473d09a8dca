using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text.Json;
using OpenAI;
using OpenAI.Images;
using OpenAI.Models;

// The SDK marks gpt-image-1's fields (output_format, background, moderation) as evaluation-only; clients send them,
// so the server's answer to them is tested here.
#pragma warning disable OPENAI001

namespace DiTServer.Api.Tests;

/// <summary>The official .NET OpenAI SDK (NuGet <c>OpenAI</c>), unchanged, against the server: <c>ImageClient</c> and
/// <c>OpenAIModelClient</c> over WebApplicationFactory's HttpClient. The SDK reads only OpenAI's shapes, so these
/// tests fail if a success or an error answer drifts from them (before: every error read "400 status code (no body)"
/// and <c>models.list()</c> was empty).</summary>
public sealed class OpenAISdkTests(OpenAISdkTests.Server server) : IClassFixture<OpenAISdkTests.Server>
{
    // SDKs parse `url` as an absolute URI: the server builds one only from a Host that AllowedHosts checked (or from
    // PublicUrls:BaseUrl), never from whatever Host a client sends. The test host is "localhost".
    public sealed class Server() : ServerFixture(new(("Serving:MaxBatchRows", "16"), ("AllowedHosts", "localhost")));

    private OpenAIClientOptions Options() => new()
    {
        Endpoint = new Uri(server.Factory.Server.BaseAddress, "/v1"),
        Transport = new HttpClientPipelineTransport(server.Factory.CreateClient()),
        RetryPolicy = new ClientRetryPolicy(maxRetries: 0), // an error must surface as it is, not after retries
    };

    private ImageClient Images() => new("ignored-model-name", new ApiKeyCredential("unused"), Options());

    private OpenAIModelClient Models() => new(new ApiKeyCredential("unused"), Options());

    private async Task<(string Name, int Size)> Served()
    {
        var root = JsonDocument.Parse(await server.Factory.CreateClient().GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        return (root.GetProperty("name").GetString()!, root.GetProperty("image_size").GetInt32());
    }

    [Fact]
    public async Task Images_generate_returns_pngs_of_the_model_size_as_bytes()
    {
        var (_, size) = await Served();
        var result = await Images().GenerateImagesAsync("3", 2, new ImageGenerationOptions
        {
            Size = new GeneratedImageSize(size, size),
            ResponseFormat = GeneratedImageFormat.Bytes,
            Quality = GeneratedImageQuality.Standard,
            EndUserId = "sdk-test",
        });
        Assert.Equal(2, result.Value.Count);
        foreach (var image in result.Value)
        {
            var png = image.ImageBytes.ToArray();
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
            Assert.Equal(size, PngWidth(png));
            Assert.False(string.IsNullOrEmpty(image.RevisedPrompt)); // the class the image shows
        }
    }

    [Fact]
    public async Task Images_generate_as_uri_gives_fetchable_job_results()
    {
        var (_, size) = await Served();
        var result = await Images().GenerateImageAsync("3", new ImageGenerationOptions
        {
            Size = new GeneratedImageSize(size, size),
            ResponseFormat = GeneratedImageFormat.Uri,
        });
        var uri = result.Value.ImageUri;
        Assert.NotNull(uri);
        Assert.True(uri.IsAbsoluteUri, uri.ToString());
        var png = await server.Factory.CreateClient().GetByteArrayAsync(uri.PathAndQuery);
        Assert.Equal(size, PngWidth(png));
    }

    [Fact]
    public async Task Models_list_and_retrieve_see_the_served_model()
    {
        var (name, _) = await Served();
        var list = await Models().GetModelsAsync();
        var only = Assert.Single(list.Value);
        Assert.Equal(name, only.Id);
        Assert.Equal("ditserver", only.OwnedBy);
        var one = await Models().GetModelAsync(name);
        Assert.Equal(name, one.Value.Id);
    }

    [Fact]
    public async Task Unknown_model_is_a_404_with_openai_error_code()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Models().GetModelAsync("dall-e-3"));
        Assert.Equal(404, e.Status);
        var error = Error(e);
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains("'dall-e-3' does not exist", e.Message);
    }

    [Fact]
    public async Task Wrong_size_reads_as_a_message_naming_size_not_no_body()
    {
        var (_, size) = await Served();
        var e = await Assert.ThrowsAsync<ClientResultException>(() =>
            Images().GenerateImageAsync("3", new ImageGenerationOptions { Size = GeneratedImageSize.W1024xH1024 }));
        Assert.Equal(400, e.Status);
        Assert.Contains($"size must be \"{size}x{size}\"", e.Message); // the SDK prints error.message
        var error = Error(e);
        Assert.Equal("size", error.GetProperty("param").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Unknown_class_suggests_names_in_the_error_message()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Images().GenerateImageAsync("sneakr"));
        Assert.Equal(400, e.Status);
        Assert.Equal("prompt", Error(e).GetProperty("param").GetString());
        Assert.Contains("unknown class 'sneakr'", e.Message);
    }

    [Theory]
    [InlineData("output_format", "jpeg")]
    [InlineData("background", "transparent")]
    public async Task Gpt_image_1_values_we_cannot_honour_are_refused_by_name(string field, string value)
    {
        var options = new ImageGenerationOptions();
        if (field == "output_format") options.OutputFileFormat = new GeneratedImageFileFormat(value);
        else options.Background = new GeneratedImageBackground(value);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Images().GenerateImageAsync("3", options));
        Assert.Equal(400, e.Status);
        Assert.Equal(field, Error(e).GetProperty("param").GetString());
    }

    [Fact]
    public async Task Harmless_gpt_image_1_fields_are_accepted()
    {
        var result = await Images().GenerateImageAsync("3", new ImageGenerationOptions
        {
            OutputFileFormat = GeneratedImageFileFormat.Png,
            Background = GeneratedImageBackground.Opaque,
            ModerationLevel = GeneratedImageModerationLevel.Low,
            Style = GeneratedImageStyle.Natural,
            ResponseFormat = GeneratedImageFormat.Bytes,
        });
        Assert.True(result.Value.ImageBytes.ToArray().Length > 8);
    }

    [Fact]
    public async Task Unknown_field_is_an_unknown_parameter_error()
    {
        // A field a newer SDK might put on the wire (this SDK has no raw-body method for images, so plain HTTP).
        var response = await server.Factory.CreateClient().PostAsync("/v1/images/generations", JobsTestClient.Json("""{"prompt": "3", "stream": true}"""));
        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("stream", error.GetProperty("param").GetString());
        Assert.Equal("unknown_parameter", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Images_edit_with_a_mask_returns_pngs_keeping_the_opaque_pixels()
    {
        var (_, size) = await Served();
        using var image = new MemoryStream(TestPngs.Picture(size, size));
        using var mask = new MemoryStream(TestPngs.LeftHalfTransparent(size));
        var result = await Images().GenerateImageEditsAsync(image, "picture.png", "3", mask, "mask.png", 2, new ImageEditOptions
        {
            Size = new GeneratedImageSize(size, size),
            ResponseFormat = GeneratedImageFormat.Bytes,
            EndUserId = "sdk-test",
        });
        Assert.Equal(2, result.Value.Count);
        using var input = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.Rgb24>(TestPngs.Picture(size, size));
        foreach (var edited in result.Value)
        {
            using var output = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.Rgb24>(edited.ImageBytes.ToArray());
            Assert.Equal(size, output.Width);
            // A kept pixel (right half) comes back within 1 per channel.
            var (a, b) = (input[size - 1, size / 2], output[size - 1, size / 2]);
            Assert.True(Math.Abs(a.R - b.R) <= 1 && Math.Abs(a.G - b.G) <= 1 && Math.Abs(a.B - b.B) <= 1, $"{a} became {b}");
            Assert.False(string.IsNullOrEmpty(edited.RevisedPrompt));
        }
    }

    [Fact]
    public async Task Images_variation_returns_pngs_of_the_class_the_model_finds()
    {
        var (_, size) = await Served();
        using var image = new MemoryStream(TestPngs.Picture(size, size));
        var result = await Images().GenerateImageVariationAsync(image, "picture.png", new ImageVariationOptions
        {
            Size = new GeneratedImageSize(size, size),
            ResponseFormat = GeneratedImageFormat.Uri,
        });
        Assert.True(result.Value.ImageUri.IsAbsoluteUri, result.Value.ImageUri.ToString());
        var png = await server.Factory.CreateClient().GetByteArrayAsync(result.Value.ImageUri.PathAndQuery);
        Assert.Equal(size, PngWidth(png));
        var classes = JsonDocument.Parse(await server.Factory.CreateClient().GetStringAsync("/v1/classes")).RootElement.GetProperty("classes");
        Assert.Contains(result.Value.RevisedPrompt, classes.EnumerateArray().Select(c => c.GetProperty("name").GetString()));
    }

    [Fact]
    public async Task Edit_and_variation_errors_read_as_messages_naming_the_field()
    {
        var (_, size) = await Served();
        using var notPng = new MemoryStream("GIF89a"u8.ToArray());
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Images().GenerateImageVariationAsync(notPng, "picture.gif"));
        Assert.Equal(400, e.Status);
        Assert.Equal("image", Error(e).GetProperty("param").GetString());
        Assert.Contains("image is not a PNG", e.Message);

        using var image = new MemoryStream(TestPngs.Picture(size, size));
        e = await Assert.ThrowsAsync<ClientResultException>(() => Images().GenerateImageEditAsync(image, "picture.png", "sneakr"));
        Assert.Equal(400, e.Status);
        Assert.Equal("prompt", Error(e).GetProperty("param").GetString());
        Assert.Contains("unknown class 'sneakr'", e.Message);
    }

    [Fact]
    public async Task Native_api_keeps_problem_json()
    {
        var response = await server.Factory.CreateClient().PostAsync("/v1/images", JobsTestClient.Json("""{"class_label": "sneakr"}"""));
        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.False(JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.TryGetProperty("error", out _));
    }

    private static JsonElement Error(ClientResultException e)
    {
        var raw = e.GetRawResponse();
        Assert.NotNull(raw);
        return JsonDocument.Parse(raw.Content.ToString()).RootElement.GetProperty("error").Clone();
    }

    private static int PngWidth(byte[] png) => (png[16] << 24) | (png[17] << 16) | (png[18] << 8) | png[19];
}
