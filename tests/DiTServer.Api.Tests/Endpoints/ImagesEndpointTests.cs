using DiTServer.Core.Pipeline;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using DiTServer.Api.Cli;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace DiTServer.Api.Tests;

/// <summary>POST /v1/images on the tiny model: equal to the sample verb, equal alone and batched, PNG/JSON/grid shapes.</summary>
public sealed class ImagesEndpointTests : IClassFixture<ImagesEndpointTests.Server>, IDisposable
{
    public sealed class Server() : ServerFixture(new(("Serving:MaxBatchRows", "64")) { Gate = new StepGate(open: true) })
    {
        public LoadedModel Reference { get; } = LoadedModel.Load(TestPaths.TinyModel);

        public override void Dispose()
        {
            base.Dispose();
            Reference.Dispose();
        }
    }

    private readonly Server server;
    private readonly HttpClient client;
    private readonly string outDir = Directory.CreateTempSubdirectory("dit-serve-").FullName;

    public ImagesEndpointTests(Server server)
    {
        this.server = server;
        client = server.Factory.CreateClient();
    }

    public void Dispose() => Directory.Delete(outDir, recursive: true);

    private static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    private async Task<(JsonElement Root, HttpResponseMessage Response)> PostJson(string body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images") { Content = Json(body) };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var response = await client.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        return (JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone(), response);
    }

    private static byte[] Pixels(byte[] png)
    {
        using var image = Image.Load<Rgb24>(png);
        var pixels = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(pixels);
        return pixels;
    }

    private static void AssertSamePixels(byte[] expectedPng, byte[] actualPng, string what)
    {
        var (a, b) = (Pixels(expectedPng), Pixels(actualPng));
        Assert.Equal(a.Length, b.Length);
        int maxDiff = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        Assert.True(maxDiff <= 1, $"{what}: max pixel difference {maxDiff}");
    }

    [Fact]
    public async Task Json_images_equal_the_sample_verbs_pngs_with_the_same_metadata()
    {
        var code = await CommandLine.RunAsync(["sample", "--model", TestPaths.TinyModel, "--labels", "3,3", "--steps", "10", "--cfg", "4",
            "--seed", "42", "--sampler", "ddpm", "--out", outDir], new StringWriter(), new StringWriter());
        Assert.Equal(0, code);

        var (root, response) = await PostJson("""{"class_label": 3, "num_images": 2, "steps": 10, "cfg_scale": 4, "seed": 42, "sampler": "ddpm"}""");
        Assert.Equal("dit-tiny", root.GetProperty("model").GetString());
        var images = root.GetProperty("images").EnumerateArray().ToList();
        Assert.Equal(2, images.Count);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(i, images[i].GetProperty("index").GetInt32());
            Assert.Equal(42, images[i].GetProperty("seed").GetInt64());
            Assert.Equal(3, images[i].GetProperty("class_label").GetInt32());
            Assert.Equal("3", images[i].GetProperty("class_name").GetString());
            var png = Convert.FromBase64String(images[i].GetProperty("png_base64").GetString()!);
            var expected = File.ReadAllBytes(Path.Combine(outDir, $"{i}.png"));
            AssertSamePixels(expected, png, $"image {i}");
            Assert.Equal(PngWriter.ReadText(expected), PngWriter.ReadText(png));
        }
        Assert.Equal("42", response.Headers.GetValues("X-Seed").Single());
    }

    [Fact]
    public async Task Png_answer_is_one_image_with_seed_and_class_headers_and_equals_the_sample_verb()
    {
        var code = await CommandLine.RunAsync(["sample", "--model", TestPaths.TinyModel, "--labels", "7", "--steps", "8", "--cfg", "1.5",
            "--seed", "5", "--sampler", "ddim", "--out", outDir], new StringWriter(), new StringWriter());
        Assert.Equal(0, code);
        var response = await client.PostAsync("/v1/images", Json("""{"class_label": "7", "steps": 8, "cfg_scale": 1.5, "seed": 5, "sampler": "ddim"}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("5", response.Headers.GetValues("X-Seed").Single());
        Assert.Equal("7", response.Headers.GetValues("X-Class-Label").Single());
        var png = await response.Content.ReadAsByteArrayAsync();
        AssertSamePixels(File.ReadAllBytes(Path.Combine(outDir, "0.png")), png, "png");
    }

    [Fact]
    public async Task Png_answer_for_several_images_is_a_grid_of_four_per_row_with_padding()
    {
        var response = await client.PostAsync("/v1/images", Json("""{"class_label": 1, "num_images": 5, "steps": 3, "seed": 9}"""));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var image = Image.Load<Rgb24>(await response.Content.ReadAsByteArrayAsync());
        Assert.Equal((4 * 16 + 5 * 2, 2 * 16 + 3 * 2), (image.Width, image.Height)); // torchvision make_grid(nrow=4, padding=2)
    }

    [Fact]
    public async Task Absent_seed_is_random_and_reported()
    {
        var (a, _) = await PostJson("""{"class_label": 2, "steps": 2}""");
        var (b, _) = await PostJson("""{"class_label": 2, "steps": 2}""");
        long sa = a.GetProperty("images")[0].GetProperty("seed").GetInt64(), sb = b.GetProperty("images")[0].GetProperty("seed").GetInt64();
        Assert.NotEqual(sa, sb);
        Assert.InRange(sa, 0, 1L << 53);
    }

    /// <summary>Different steps, guidance scales, samplers, guidance modes, image counts and seeds, all at once: each
    /// request must give the pixels it gives alone (±1), and the engine must really have batched them.</summary>
    [Fact]
    public async Task Concurrent_requests_each_equal_their_solo_result()
    {
        var cases = new (string Body, int Label, int N, SamplingOptions Options)[]
        {
            ("""{"class_label": 1, "num_images": 2, "steps": 120, "cfg_scale": 4, "seed": 1, "sampler": "ddpm"}""", 1, 2,
                new() { Steps = 120, CfgScale = 4, Seed = 1 }),
            ("""{"class_label": 5, "steps": 150, "cfg_scale": 1, "seed": 2, "sampler": "ddpm"}""", 5, 1, new() { Steps = 150, CfgScale = 1, Seed = 2 }),
            ("""{"class_label": 7, "steps": 100, "cfg_scale": 2.5, "seed": 3, "sampler": "ddim", "guidance": "all"}""", 7, 1,
                new() { Steps = 100, CfgScale = 2.5, Seed = 3, Sampler = SamplerKind.Ddim, Guidance = GuidanceMode.All }),
            ("""{"class_label": 0, "num_images": 3, "steps": 90, "cfg_scale": 6, "seed": 4, "sampler": "ddim", "eta": 0.5}""", 0, 3,
                new() { Steps = 90, CfgScale = 6, Seed = 4, Sampler = SamplerKind.Ddim, Eta = 0.5 }),
            ("""{"class_label": 9, "steps": 60, "cfg_scale": 4, "seed": 5, "sampler": "ddpm"}""", 9, 1, new() { Steps = 60, CfgScale = 4, Seed = 5 }),
            // The server's default sampler (no "sampler" field) and an ODE solver with its own spacing, in the same forwards.
            ("""{"class_label": 2, "steps": 12, "cfg_scale": 3, "seed": 6}""", 2, 1,
                new() { Sampler = SamplerDefaults.Sampler, Steps = 12, CfgScale = 3, Seed = 6 }),
            ("""{"class_label": 4, "num_images": 2, "steps": 9, "cfg_scale": 4, "seed": 7, "sampler": "dpmpp_3m", "spacing": "time_quadratic"}""", 4, 2,
                new() { Sampler = SamplerKind.DpmPP3M, Spacing = DiTServer.Core.Sampling.Solvers.StepSpacing.TimeQuadratic, Steps = 9, CfgScale = 4,
                    Seed = 7 }),
        };
        // The worker is held after its first forward until every request is in, so they share forwards on any machine.
        server.Factory.Gate!.Close();
        var posts = cases.Select(c => PostJson(c.Body)).ToList();
        await server.Factory.WaitFor(s => s.ActiveRequests + s.QueueDepth == cases.Length, "every request accepted");
        server.Factory.Gate.Open();
        var answers = await Task.WhenAll(posts);
        Assert.True(server.Factory.Engine.Snapshot().MaxRequestsInOneForward >= 2, "the requests never shared a forward");

        for (int k = 0; k < cases.Length; k++)
        {
            var solo = ImagePipeline.Generate(server.Reference, Enumerable.Repeat(cases[k].Label, cases[k].N).ToArray(), cases[k].Options);
            var images = answers[k].Root.GetProperty("images").EnumerateArray().ToList();
            Assert.Equal(cases[k].N, images.Count);
            for (int i = 0; i < images.Count; i++)
                AssertSamePixels(solo[i].Png, Convert.FromBase64String(images[i].GetProperty("png_base64").GetString()!), $"case {k} image {i}");
        }
    }

    [Fact]
    public async Task Models_lists_the_loaded_model_and_limits()
    {
        var root = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement;
        var model = root.GetProperty("models")[0];
        Assert.Equal("dit-tiny", model.GetProperty("name").GetString());
        Assert.Equal(16, model.GetProperty("image_size").GetInt32());
        Assert.Equal(10, model.GetProperty("num_classes").GetInt32());
        Assert.Equal(["ddpm", "ddim", "dpmpp_2m", "dpmpp_3m", "unipc"],
            model.GetProperty("samplers").EnumerateArray().Select(s => s.GetProperty("name").GetString()));
        Assert.Equal(8, model.GetProperty("limits").GetProperty("max_images_per_request").GetInt32());
        Assert.Equal("step", model.GetProperty("batching").GetProperty("mode").GetString());
        Assert.Equal("cpu", model.GetProperty("device").GetString());
        Assert.Equal("fp32", model.GetProperty("precision").GetString());
        Assert.Equal(64, model.GetProperty("previews").GetProperty("max_size").GetInt32()); // vae-tiny has 4 latent channels
    }

    [Fact]
    public async Task Classes_lists_every_index_with_its_name()
    {
        var root = JsonDocument.Parse(await client.GetStringAsync("/v1/classes")).RootElement;
        Assert.Equal(10, root.GetProperty("count").GetInt32());
        var classes = root.GetProperty("classes").EnumerateArray().ToList();
        Assert.Equal(Enumerable.Range(0, 10), classes.Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal("9", classes[9].GetProperty("name").GetString());
    }

    [Fact]
    public async Task Accept_of_neither_png_nor_json_is_406_problem()
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images") { Content = Json("""{"class_label": 1}""") };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/html"));
        var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.NotAcceptable, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task Non_json_content_type_is_415_problem()
    {
        var response = await client.PostAsync("/v1/images", new StringContent("class_label=1", Encoding.UTF8, "application/x-www-form-urlencoded"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task Swagger_documents_the_images_endpoint_with_an_example_and_both_response_types()
    {
        var json = await client.GetStringAsync("/swagger/v1/swagger.json");
        var post = JsonDocument.Parse(json).RootElement.GetProperty("paths").GetProperty("/v1/images").GetProperty("post");
        Assert.True(post.GetProperty("requestBody").GetProperty("content").GetProperty("application/json").TryGetProperty("example", out _));
        var ok = post.GetProperty("responses").GetProperty("200").GetProperty("content");
        Assert.True(ok.TryGetProperty("image/png", out _));
        Assert.True(ok.TryGetProperty("application/json", out _));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/swagger/index.html")).StatusCode);
    }
}
