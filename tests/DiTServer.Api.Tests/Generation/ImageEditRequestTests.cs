using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using DiTServer.Core.Imaging;
using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace DiTServer.Api.Tests;

/// <summary>Image to image on the native routes: init_image, strength and mask on <c>/v1/images</c> and <c>/v1/jobs</c>
/// give the sample verb's bytes, keep masked pixels exactly, bill and report only the steps run, and every bad image or
/// strength is a 400 problem+json naming the field and what was expected.</summary>
public sealed class ImageEditRequestTests(ImageEditRequestTests.Server server) : IClassFixture<ImageEditRequestTests.Server>
{
    public sealed class Server : ServerFixture
    {
        public LoadedModel Reference { get; } = LoadedModel.Load(TestPaths.TinyModel); // 16×16 RGB through vae-tiny

        public override void Dispose()
        {
            Reference.Dispose();
            base.Dispose();
        }
    }

    private const int Size = 16;

    private static byte[] Rgb(int seed)
    {
        var pixels = new byte[Size * Size * 3];
        new Random(seed).NextBytes(pixels);
        return pixels;
    }

    private static string Png(byte[] hwc, int size = Size, int channels = 3) => Convert.ToBase64String(PngWriter.Encode(hwc, size, size, channels));

    /// <summary>Top half white (redrawn), bottom half black (kept).</summary>
    private static byte[] TopHalf() => Enumerable.Range(0, Size * Size).Select(i => i / Size < Size / 2 ? (byte)255 : (byte)0).ToArray();

    /// <summary>A PNG signature and an IHDR that claims <paramref name="width"/>×<paramref name="height"/>, and nothing else.</summary>
    private static string Header(uint width, uint height)
    {
        var bytes = new byte[8 + 8 + 13 + 4];
        new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }.CopyTo(bytes, 0);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), 13);
        "IHDR"u8.CopyTo(bytes.AsSpan(12));
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(16), width);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(20), height);
        bytes[24] = 8;
        bytes[25] = 2;
        return Convert.ToBase64String(bytes);
    }

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    public static TheoryData<string, string, string> BadCases()
    {
        string init = Png(Rgb(1)), mask = Png(TopHalf(), channels: 1);
        return new()
        {
            { $$"""{"class_label": 1, "init_image": "not base64!"}""", "init_image", "init_image is not valid base64" },
            { $$"""{"class_label": 1, "init_image": "{{Convert.ToBase64String("GIF89a...."u8.ToArray())}}"}""", "init_image", "init_image is not a PNG" },
            { $$"""{"class_label": 1, "init_image": "{{Png(new byte[8 * 8 * 3], 8)}}"}""", "init_image",
                "init_image must be 16x16 pixels (the model's image size), got 8x8" },
            { $$"""{"class_label": 1, "init_image": "{{Header(100_000, 100_000)}}"}""", "init_image", "over the limit of 16777216 pixels" },
            { $$"""{"class_label": 1, "init_image": "{{Header(16, 16)}}"}""", "init_image", "init_image is not a valid PNG" }, // header, no data
            { $$"""{"class_label": 1, "init_image": 5}""", "init_image", "init_image must be a string: a base64 PNG of 16x16 pixels" },
            { $$"""{"class_label": 1, "init_image": "{{init}}", "strength": 0}""", "strength", "strength must be in (0, 1]" },
            { $$"""{"class_label": 1, "init_image": "{{init}}", "strength": 1.5}""", "strength", "strength must be in (0, 1]" },
            { $$"""{"class_label": 1, "init_image": "{{init}}", "strength": "high"}""", "strength", "strength must be a number" },
            { """{"class_label": 1, "strength": 0.5}""", "strength", "strength applies only with init_image" },
            { $$"""{"class_label": 1, "mask": "{{mask}}"}""", "mask", "mask applies only with init_image" },
            { $$"""{"class_label": 1, "init_image": "{{init}}", "mask": "{{Png(new byte[32 * 32], 32, 1)}}"}""", "mask",
                "mask must be 16x16 pixels (the model's image size), got 32x32" },
            { $$"""{"class_label": 1, "init_image": "{{init}}", "mask": "data:text/plain,hello"}""", "mask", "mask is not valid base64" },
        };
    }

    [Theory]
    [MemberData(nameof(BadCases))]
    public async Task A_bad_image_or_strength_is_400_naming_the_field_on_images_and_jobs(string body, string field, string expected)
    {
        var client = server.Factory.CreateClient();
        foreach (var path in new[] { "/v1/images", "/v1/jobs" })
        {
            var response = await client.PostAsync(path, Json(body));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{path}: {(int)response.StatusCode}: {text}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            var errors = JsonDocument.Parse(text).RootElement.GetProperty("errors");
            Assert.True(errors.TryGetProperty(field, out var messages), $"{path}: no error for {field}: {text}");
            Assert.Contains(messages.EnumerateArray(), m => m.GetString()!.Contains(expected));
        }
    }

    [Fact]
    public async Task An_edit_gives_the_sample_verbs_bytes_keeps_masked_pixels_and_names_strength_and_mask()
    {
        var client = server.Factory.CreateClient();
        var init = Rgb(2);
        var mask = TopHalf();
        var body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["class_label"] = 4, ["num_images"] = 2, ["steps"] = 10, ["seed"] = 42, ["strength"] = 0.6,
            ["init_image"] = "data:image/png;base64," + Png(init), ["mask"] = Png(mask, channels: 1),
        });
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images") { Content = Json(body) };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var images = JsonDocument.Parse(text).RootElement.GetProperty("images").EnumerateArray()
            .Select(i => Convert.FromBase64String(i.GetProperty("png_base64").GetString()!)).ToArray();

        var options = new SamplingOptions { Sampler = SamplerDefaults.Sampler, Steps = 10, CfgScale = 4, Seed = 42 };
        var expected = ImagePipeline.Generate(server.Reference, [4, 4], options,
            edit: new ImageEdit(init, Size, 3, 0.6, mask));
        for (int j = 0; j < 2; j++)
        {
            using var png = Image.Load<Rgb24>(images[j]);
            var hwc = new byte[Size * Size * 3];
            png.CopyPixelDataTo(hwc);
            Assert.Equal(expected[j].Hwc, hwc);
            for (int i = 0; i < Size * Size; i++)
                if (mask[i] == 0) Assert.Equal(init.AsSpan(i * 3, 3).ToArray(), hwc.AsSpan(i * 3, 3).ToArray());
            var meta = PngWriter.ReadText(images[j]);
            Assert.Equal("0.6", meta["strength"]);
            Assert.Equal("128 of 256 pixels redrawn", meta["mask"]);
            Assert.Contains("Denoising strength: 0.6, Mask: 128 of 256 pixels redrawn", meta["parameters"]);
        }
    }

    [Fact]
    public async Task A_job_edit_reports_only_the_steps_it_runs()
    {
        var client = server.Factory.CreateClient();
        var (id, _, created) = await client.CreateJob($$"""{"class_label": 2, "steps": 20, "seed": 1, "init_image": "{{Png(Rgb(3))}}", "strength": 0.25}""");
        Assert.Equal(5, created.GetProperty("total_steps").GetInt32());
        Assert.Equal(0.25, created.GetProperty("parameters").GetProperty("strength").GetDouble());
        var done = await client.WaitForJob(id, j => j.State() == "succeeded", "the job to finish");
        Assert.Equal(5, done.GetProperty("step").GetInt32());
        var png = await client.GetByteArrayAsync($"/v1/jobs/{id}/result");
        Assert.Equal("0.25", PngWriter.ReadText(png)["strength"]);
    }
}
