using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>POST /v1/images/edits and /v1/images/variations take OpenAI's multipart uploads, run them as edits
/// (transparent mask pixels redrawn, opaque ones kept), answer in OpenAI's shape and refuse mistakes with OpenAI's
/// error object, never a 500.</summary>
public sealed class OpenAIImageEditsTests(OpenAIImageEditsTests.Server server) : IClassFixture<OpenAIImageEditsTests.Server>
{
    public sealed class Server : IDisposable
    {
        public ServerFactory Factory { get; } = new(("Serving:MaxBatchRows", "16"));
        public void Dispose() => Factory.Dispose();
    }

    private readonly HttpClient client = server.Factory.CreateClient();

    private async Task<int> ImageSize() =>
        JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0].GetProperty("image_size").GetInt32();

    private static MultipartFormDataContent Form(byte[]? image, byte[]? mask, params (string Name, string Value)[] fields)
    {
        var form = new MultipartFormDataContent();
        if (image is not null) form.Add(File(image), "image", "image.png");
        if (mask is not null) form.Add(File(mask), "mask", "mask.png");
        foreach (var (name, value) in fields) form.Add(new StringContent(value), name);
        return form;
    }

    private static ByteArrayContent File(byte[] bytes)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("image/png");
        return content;
    }

    private async Task<JsonElement> Ok(string path, HttpContent form)
    {
        var response = await client.PostAsync(path, form);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static List<byte[]> Images(JsonElement root) =>
        root.GetProperty("data").EnumerateArray().Select(d => Convert.FromBase64String(d.GetProperty("b64_json").GetString()!)).ToList();

    private static Rgb24[] Pixels(byte[] png)
    {
        using var image = SixLabors.ImageSharp.Image.Load<Rgb24>(png);
        var pixels = new Rgb24[image.Width * image.Height];
        image.CopyPixelDataTo(pixels);
        return pixels;
    }

    [Fact]
    public async Task Edit_keeps_the_opaque_half_of_the_mask_exactly_and_redraws_the_transparent_half()
    {
        int size = await ImageSize();
        var picture = TestPngs.Picture(size, size);
        var root = await Ok("/v1/images/edits", Form(picture, TestPngs.LeftHalfTransparent(size),
            ("prompt", "3"), ("n", "2"), ("size", $"{size}x{size}"), ("response_format", "b64_json"), ("seed", "7"), ("steps", "6"), ("user", "u")));
        var images = Images(root);
        Assert.Equal(2, images.Count);
        var input = Pixels(picture);
        foreach (var png in images)
        {
            var output = Pixels(png);
            Assert.Equal(input.Length, output.Length);
            for (int y = 0; y < size; y++)
                for (int x = size / 2; x < size; x++)
                    Assert.True(Close(input[y * size + x], output[y * size + x]), $"kept pixel ({x}, {y}) changed");
            // The transparent half is drawn anew (strength 1 by default with a mask): some pixel there must differ.
            Assert.Contains(Enumerable.Range(0, size * size).Where(i => i % size < size / 2), i => !Close(input[i], output[i]));
        }
        Assert.Equal(await ClassName(3), root.GetProperty("data")[0].GetProperty("revised_prompt").GetString());
    }

    private static bool Close(Rgb24 a, Rgb24 b) => Math.Abs(a.R - b.R) <= 1 && Math.Abs(a.G - b.G) <= 1 && Math.Abs(a.B - b.B) <= 1;

    private async Task<string> ClassName(int index) =>
        JsonDocument.Parse(await client.GetStringAsync("/v1/classes")).RootElement.GetProperty("classes")[index].GetProperty("name").GetString()!;

    [Fact]
    public async Task Strength_changes_the_edit_and_a_resized_square_gives_the_same_bytes_as_its_model_size_copy()
    {
        int size = await ImageSize();
        (string, string)[] Fields(string strength) => [("prompt", "2"), ("seed", "11"), ("steps", "8"), ("strength", strength)];
        var low = Images(await Ok("/v1/images/edits", Form(TestPngs.Picture(size, size), null, Fields("0.25"))))[0];
        var high = Images(await Ok("/v1/images/edits", Form(TestPngs.Picture(size, size), null, Fields("1"))))[0];
        // The strength reaches the run (how close each stays to the input is the native route's test, on a trained model).
        Assert.NotEqual(low, high);
        Assert.Equal(low, Images(await Ok("/v1/images/edits", Form(TestPngs.Picture(size, size), null, Fields("0.25"))))[0]);
        // A square of twice the size is resized to the model's: accepted, and an image of the model's size comes back.
        var doubled = Images(await Ok("/v1/images/edits", Form(TestPngs.Picture(2 * size, 2 * size), null, Fields("0.25"))))[0];
        Assert.Equal(size * size, Pixels(doubled).Length);
    }

    [Fact]
    public async Task Variation_is_the_edit_of_the_class_the_model_finds_in_the_picture()
    {
        int size = await ImageSize();
        var picture = TestPngs.Picture(size, size);
        var variation = await Ok("/v1/images/variations", Form(picture, null, ("n", "2"), ("seed", "5"), ("steps", "6"), ("size", $"{size}x{size}")));
        var guessed = variation.GetProperty("data")[0].GetProperty("revised_prompt").GetString()!;
        Assert.Equal(2, Images(variation).Count);
        // The same picture, seed and default strength (0.75) as an edit of the guessed class: the same bytes.
        var edit = await Ok("/v1/images/edits", Form(picture, null, ("prompt", guessed), ("n", "2"), ("seed", "5"), ("steps", "6"), ("strength", "0.75")));
        Assert.Equal(Images(edit), Images(variation));
        // The guess is the model's, not the first class: the same picture always gets the same one.
        var again = await Ok("/v1/images/variations", Form(picture, null, ("seed", "6"), ("steps", "2")));
        Assert.Equal(guessed, again.GetProperty("data")[0].GetProperty("revised_prompt").GetString());
    }

    [Fact]
    public async Task Url_format_gives_fetchable_job_results()
    {
        int size = await ImageSize();
        var root = await Ok("/v1/images/edits", Form(TestPngs.Picture(size, size), null, ("prompt", "1"), ("response_format", "url"), ("steps", "4")));
        var url = root.GetProperty("data")[0].GetProperty("url").GetString()!;
        Assert.StartsWith("/v1/jobs/", url);
        Assert.Equal(size * size, Pixels(await client.GetByteArrayAsync(url)).Length);
    }

    public static TheoryData<string, string, string?, string> Mistakes() => new()
    {
        // route, case, param, message
        { "/v1/images/edits", "no image", "image", "image is required" },
        { "/v1/images/edits", "image as text", "image", "must be a file part" },
        { "/v1/images/edits", "not a png", "image", "is not a PNG" },
        { "/v1/images/edits", "not square", "image", "must be square" },
        { "/v1/images/edits", "no prompt", "prompt", "prompt is required" },
        { "/v1/images/edits", "unknown class", "prompt", "unknown class 'zebra'" },
        { "/v1/images/edits", "wrong size", "size", "the model's resolution" },
        { "/v1/images/edits", "n 0", "n", "n must be in 1..8" },
        { "/v1/images/edits", "n text", "n", "n" },
        { "/v1/images/edits", "strength 1.5", "strength", "0 < strength ≤ 1" },
        { "/v1/images/edits", "mask of another size", "mask", "mask must have the image's size" },
        { "/v1/images/edits", "unknown field", "negative_prompt", "unknown field" },
        { "/v1/images/variations", "prompt", "prompt", "not a field of variations" },
        { "/v1/images/variations", "mask", "mask", "unknown file field 'mask'" },
        { "/v1/images/variations", "no image", "image", "image is required" },
    };

    [Theory]
    [MemberData(nameof(Mistakes))]
    public async Task Bad_uploads_are_400_openai_errors_naming_the_field(string path, string mistake, string? param, string expected)
    {
        int size = await ImageSize();
        var picture = TestPngs.Picture(size, size);
        (string, string)[] prompt = path.EndsWith("edits") ? [("prompt", "3")] : [("n", "1")];
        var form = mistake switch
        {
            "no image" => Form(null, null, prompt),
            "image as text" => Form(null, null, [.. prompt, ("image", "aGVsbG8=")]),
            "not a png" => Form(System.Text.Encoding.UTF8.GetBytes("GIF89a not a png at all"), null, prompt),
            "not square" => Form(TestPngs.Picture(size, size / 2), null, prompt),
            "no prompt" => Form(picture, null),
            "unknown class" => Form(picture, null, ("prompt", "zebra")),
            "wrong size" => Form(picture, null, [.. prompt, ("size", "1024x1024")]),
            "n 0" => Form(picture, null, [.. prompt, ("n", "0")]),
            "n text" => Form(picture, null, [.. prompt, ("n", "two")]),
            "strength 1.5" => Form(picture, null, [.. prompt, ("strength", "1.5")]),
            "mask of another size" => Form(picture, TestPngs.LeftHalfTransparent(size / 2), prompt),
            "unknown field" => Form(picture, null, [.. prompt, ("negative_prompt", "x")]),
            "prompt" => Form(picture, null, ("prompt", "3")),
            "mask" => Form(picture, TestPngs.LeftHalfTransparent(size)),
            _ => throw new ArgumentException(mistake),
        };
        var response = await client.PostAsync(path, form);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{mistake}: {response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains(expected, error.GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_json_body_is_415_and_an_oversized_upload_413_both_openai_errors()
    {
        var json = await client.PostAsync("/v1/images/edits", Json("""{"prompt": "3"}"""));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, json.StatusCode);
        var error = JsonDocument.Parse(await json.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("unsupported_media_type", error.GetProperty("code").GetString());
        Assert.Contains("multipart/form-data", error.GetProperty("message").GetString());

        var huge = Form(new byte[Endpoints.OpenAIImageForm.MaxBodyBytes + 1], null, ("prompt", "3"));
        var tooLarge = await client.PostAsync("/v1/images/variations", huge);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge.StatusCode);
        var body = JsonDocument.Parse(await tooLarge.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("request_too_large", body.GetProperty("code").GetString());
    }
}
