using System.Net;
using System.Text;
using System.Text.Json;
using DiTServer.Api.Cli;
using DiTServer.Core.Imaging;
using DiTServer.Core.Sampling;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp.PyBridge;
using static DiTServer.Api.Tests.JobsTestClient;
using static DiTServer.Api.Tests.CliRun;

namespace DiTServer.Api.Tests;

/// <summary>DPM-Solver++ and UniPC everywhere a sampler is chosen: /v1/images (against the authors' pixels, batched
/// together), the OpenAI route, jobs, /v1/models, PNG metadata, the sample verb; and every bad sampler input refused.</summary>
public sealed class SamplerApiTests(SamplerApiTests.Server server) : IClassFixture<SamplerApiTests.Server>, IDisposable
{
    public sealed class Server() : ServerFixture(new(("Serving:MaxBatchRows", "64")));

    private readonly HttpClient client = server.Factory.CreateClient();
    private readonly string outDir = Directory.CreateTempSubdirectory("dit-solvers-").FullName;

    public void Dispose() => Directory.Delete(outDir, recursive: true);

    /// <summary>The single-label solver fixtures as requests: (body, fixture file).</summary>
    public static TheoryData<string, string> FixtureRequests => new()
    {
        { """{"class_label": 3, "steps": 5, "cfg_scale": 4, "seed": 11, "sampler": "dpmpp_2m"}""", "solver-4" },
        { """{"class_label": 5, "steps": 20, "cfg_scale": 1, "seed": 7, "sampler": "dpmpp_3m", "spacing": "logSNR"}""", "solver-1" },
        { """{"class_label": 0, "steps": 15, "cfg_scale": 1.5, "seed": 5, "sampler": "unipc", "order": """ +
            """3, "unipc_variant": "bh1", "spacing": "time_quadratic"}""", "solver-3" },
    };

    private static byte[] Rgb(byte[] png)
    {
        using var image = Image.Load<Rgb24>(png);
        var pixels = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(pixels);
        return pixels;
    }

    private static void AssertClose(byte[] expected, byte[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int maxDiff = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(maxDiff <= 1, $"{what}: max pixel difference {maxDiff}");
    }

    private static byte[] FixturePixels(string file)
    {
        var pixels = Safetensors.LoadStateDict(TestPaths.Fixture($"dit-tiny/{file}.safetensors"))["pixels"];
        return pixels[0].permute(1, 2, 0).contiguous().data<byte>().ToArray();
    }

    private async Task<byte[]> PostPng(string body)
    {
        var response = await client.PostAsync("/v1/images", Json(body));
        Assert.True(response.StatusCode == HttpStatusCode.OK, await response.Content.ReadAsStringAsync());
        return await response.Content.ReadAsByteArrayAsync();
    }

    [Fact]
    public async Task Solver_requests_sent_together_give_the_authors_pixels_and_say_how_they_were_made()
    {
        // All at once, beside a DDPM request, so the engine batches different samplers into shared forwards.
        var cases = FixtureRequests.Select(row => ((string)row[0], (string)row[1])).ToList();
        var ddpm = PostPng("""{"class_label": 4, "steps": 12, "seed": 1}""");
        var pngs = await Task.WhenAll(cases.Select(c => PostPng(c.Item1)));
        await ddpm;
        for (int i = 0; i < cases.Count; i++)
            AssertClose(FixturePixels(cases[i].Item2), Rgb(pngs[i]), cases[i].Item2);

        var text = PngWriter.ReadText(pngs[2]);
        Assert.Equal("unipc", text["sampler"]);
        Assert.Equal("time_quadratic", text["spacing"]);
        Assert.Equal("3", text["order"]);
        Assert.Equal("bh1", text["unipc_variant"]);
        Assert.Equal("15", text["steps"]);
        var dpm = PngWriter.ReadText(pngs[0]);
        Assert.Equal(("dpmpp_2m", "time_uniform", "2"), (dpm["sampler"], dpm["spacing"], dpm["order"]));
        Assert.False(dpm.ContainsKey("unipc_variant"));
    }

    [Fact]
    public async Task Images_equal_the_sample_verbs_for_the_same_solver_flags()
    {
        var code = await CommandLine.RunAsync(["sample", "--model", TestPaths.TinyModel, "--labels", "6", "--steps", "7", "--cfg", "3",
            "--seed", "8", "--sampler", "unipc", "--order", "1", "--spacing", "logsnr", "--guidance-interval", "100,600", "--out", outDir],
            new StringWriter(), new StringWriter());
        Assert.Equal(0, code);
        var png = await PostPng("""{"class_label": 6, "steps": 7, "cfg_scale": 3, "seed": 8, "sampler": "unipc", "order": """ +
            """1, "spacing": "LogSNR", "guidance_interval": [100, 600]}""");
        var expected = File.ReadAllBytes(Path.Combine(outDir, "0.png"));
        AssertClose(Rgb(expected), Rgb(png), "unipc via HTTP vs sample");
        Assert.Equal(PngWriter.ReadText(expected), PngWriter.ReadText(png));
        Assert.Equal("[100, 600]", PngWriter.ReadText(png)["guidance_interval"]);
    }

    [Fact]
    public async Task Cached_images_equal_the_sample_verbs_and_record_the_cache_settings()
    {
        var code = await CommandLine.RunAsync(["sample", "--model", TestPaths.TinyModel, "--labels", "4", "--steps", "9", "--cfg", "3",
            "--seed", "12", "--sampler", "ddpm", "--cache-interval", "3", "--cache-mode", "taylor", "--out", outDir],
            new StringWriter(), new StringWriter());
        Assert.Equal(0, code);
        var png = await PostPng(
            """{"class_label": 4, "steps": 9, "cfg_scale": 3, "seed": 12, "sampler": "ddpm", "cache_interval": 3, "cache_mode": "Taylor"}""");
        var expected = File.ReadAllBytes(Path.Combine(outDir, "0.png"));
        AssertClose(Rgb(expected), Rgb(png), "cached ddpm via HTTP vs sample");
        var text = PngWriter.ReadText(png);
        Assert.Equal(PngWriter.ReadText(expected), text);
        Assert.Equal(("3", "taylor"), (text["cache_interval"], text["cache_mode"]));
        Assert.Contains("Cache interval: 3, Cache mode: taylor", text["parameters"]);
        // Uncached images keep today's metadata: no cache keys.
        var plain = PngWriter.ReadText(await PostPng("""{"class_label": 4, "steps": 3, "seed": 12, "sampler": "ddpm"}"""));
        Assert.False(plain.ContainsKey("cache_interval"));
    }

    [Fact]
    public async Task A_guidance_interval_that_contains_no_step_is_an_unguided_run()
    {
        // dpmpp_2m's model timesteps at 5 steps are 999, 799.2, …, 0: none lies in [0.5, 1].
        var never = await PostPng("""{"class_label": 2, "steps": 5, "cfg_scale": 4, "seed": 3, "sampler": "dpmpp_2m", "guidance_interval": [0.5, 1]}""");
        var unguided = await PostPng("""{"class_label": 2, "steps": 5, "cfg_scale": 1, "seed": 3, "sampler": "dpmpp_2m"}""");
        var always = await PostPng("""{"class_label": 2, "steps": 5, "cfg_scale": 4, "seed": 3, "sampler": "dpmpp_2m", "guidance_interval": [0, 1000]}""");
        var guided = await PostPng("""{"class_label": 2, "steps": 5, "cfg_scale": 4, "seed": 3, "sampler": "dpmpp_2m"}""");
        Assert.Equal(Rgb(unguided), Rgb(never));
        Assert.Equal(Rgb(guided), Rgb(always));
        Assert.NotEqual(Rgb(guided), Rgb(unguided));
    }

    [Fact]
    public async Task A_request_without_sampler_and_steps_gets_the_default_sampler_and_steps_that_models_lists()
    {
        var model = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        string sampler = model.GetProperty("default_sampler").GetString()!;
        int steps = model.GetProperty("samplers").EnumerateArray().Single(s => s.GetProperty("name").GetString() == sampler)
            .GetProperty("default_steps").GetInt32();
        Assert.Equal((SamplerDefaults.Sampler.Name(), SamplerDefaults.Steps(SamplerDefaults.Sampler)), (sampler, steps));
        var text = PngWriter.ReadText(await PostPng("""{"class_label": 1, "seed": 2}"""));
        Assert.Equal((sampler, steps.ToString(System.Globalization.CultureInfo.InvariantCulture)), (text["sampler"], text["steps"]));
    }

    [Fact]
    public async Task Models_lists_each_sampler_with_its_options_and_defaults()
    {
        var model = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        var samplers = model.GetProperty("samplers").EnumerateArray().ToDictionary(s => s.GetProperty("name").GetString()!);
        Assert.Equal(["ddpm", "ddim", "dpmpp_2m", "dpmpp_3m", "unipc"], samplers.Keys);
        Assert.Contains(model.GetProperty("default_sampler").GetString(), samplers.Keys);
        foreach (var s in samplers.Values) Assert.InRange(s.GetProperty("default_steps").GetInt32(), 1, 1000);
        var unipc = samplers["unipc"];
        Assert.Equal([1, 2, 3], unipc.GetProperty("orders").EnumerateArray().Select(o => o.GetInt32()));
        Assert.True(unipc.GetProperty("order_settable").GetBoolean());
        Assert.Equal(["bh1", "bh2"], unipc.GetProperty("variants").EnumerateArray().Select(o => o.GetString()));
        Assert.Equal("bh2", unipc.GetProperty("default_variant").GetString());
        Assert.Equal(["time_uniform", "logsnr", "time_quadratic"], samplers["dpmpp_2m"].GetProperty("spacings").EnumerateArray().Select(o => o.GetString()));
        Assert.False(samplers["dpmpp_3m"].GetProperty("order_settable").GetBoolean());
        Assert.False(samplers["dpmpp_2m"].GetProperty("thresholding").GetBoolean()); // dit-tiny is a latent model
        Assert.Empty(samplers["ddpm"].GetProperty("spacings").EnumerateArray());
    }

    [Fact]
    public async Task The_openai_route_takes_the_solver_options_as_extras()
    {
        var response = await client.PostAsync("/v1/images/generations",
            Json("""{"prompt": "3", "steps": 5, "cfg_scale": 4, "seed": 11, "sampler": "dpmpp_2m", "spacing": "time_uniform"}"""));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        var png = Convert.FromBase64String(JsonDocument.Parse(text).RootElement.GetProperty("data")[0].GetProperty("b64_json").GetString()!);
        AssertClose(FixturePixels("solver-4"), Rgb(png), "openai dpmpp_2m");

        // The OpenAI-style route speaks OpenAI's error dialect: the field is the error's param.
        var refused = await client.PostAsync("/v1/images/generations", Json("""{"prompt": "3", "sampler": "unipc", "unipc_variant": "bh9"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("unipc_variant", error.GetProperty("param").GetString());
        Assert.Contains("bh1 or bh2", error.GetProperty("message").GetString());
    }

    public static TheoryData<string, string, string> BadInputs => new()
    {
        { """{"class_label": 1, "sampler": "dpm++"}""", "sampler", "use ddpm, ddim, dpmpp_2m, dpmpp_3m or unipc" },
        { """{"class_label": 1, "sampler": "dpmpp_2m", "spacing": "karras"}""", "spacing",
            "unknown spacing 'karras'; use time_uniform, logsnr or time_quadratic" },
        { """{"class_label": 1, "sampler": "dpmpp_2m", "spacing": 3}""", "spacing", "spacing must be a string" },
        { """{"class_label": 1, "sampler": "ddim", "spacing": "logsnr"}""", "spacing", "spacing applies to the ODE solvers only" },
        { """{"class_label": 1, "sampler": "unipc", "unipc_variant": "bh3"}""", "unipc_variant", "unknown unipc_variant 'bh3'; use bh1 or bh2" },
        { """{"class_label": 1, "sampler": "dpmpp_2m", "unipc_variant": "bh1"}""", "unipc_variant", "applies to the unipc sampler only" },
        { """{"class_label": 1, "sampler": "unipc", "order": 4}""", "order", "order must be in 1..3" },
        { """{"class_label": 1, "sampler": "unipc", "order": 0}""", "order", "order must be in 1..3" },
        { """{"class_label": 1, "sampler": "unipc", "order": 2.5}""", "order", "order must be an integer" },
        { """{"class_label": 1, "sampler": "dpmpp_2m", "order": 3}""", "order", "dpmpp_2m is order 2, or order 1 (DDIM); order 3 is" },
        { """{"class_label": 1, "sampler": "dpmpp_3m", "order": 3}""", "order", "order is fixed by the sampler's name" },
        { """{"class_label": 1, "sampler": "ddim", "order": 2}""", "order", "applies to unipc only" },
        { """{"class_label": 1, "sampler": "unipc", "order": 3, "steps": 2}""", "steps", "steps must be at least the solver's order (3)" },
        { """{"class_label": 1, "sampler": "dpmpp_3m", "steps": 2}""", "steps", "steps must be at least the solver's order (3)" },
        { """{"class_label": 1, "guidance_interval": [600, 100]}""", "guidance_interval", "0 ≤ lo < hi ≤ 1000" },
        { """{"class_label": 1, "guidance_interval": [100, 100]}""", "guidance_interval", "0 ≤ lo < hi ≤ 1000" },
        { """{"class_label": 1, "guidance_interval": [-1, 100]}""", "guidance_interval", "0 ≤ lo < hi ≤ 1000" },
        { """{"class_label": 1, "guidance_interval": [0, 1001]}""", "guidance_interval", "0 ≤ lo < hi ≤ 1000" },
        { """{"class_label": 1, "guidance_interval": [0]}""", "guidance_interval", "two numbers" },
        { """{"class_label": 1, "guidance_interval": [0, 10, 20]}""", "guidance_interval", "two numbers" },
        { """{"class_label": 1, "guidance_interval": "0,500"}""", "guidance_interval", "two numbers" },
        { """{"class_label": 1, "guidance_interval": [0, "500"]}""", "guidance_interval", "two numbers" },
        { """{"class_label": 1, "sampler": "dpmpp_2m", "thresholding": true}""", "thresholding", "pixel-space models" },
        { """{"class_label": 1, "sampler": "dpmpp_2m", "thresholding": "yes"}""", "thresholding", "thresholding must be true or false" },
        { """{"class_label": 1, "sampler": "ddpm", "thresholding": true}""", "thresholding", "applies to the ODE solvers only" },
        { """{"class_label": 1, "steps": 1}""", "steps", "steps must be at least the solver's order (2) for unipc" },
        { """{"class_label": 1, "cache_interval": 0}""", "cache_interval", "cache_interval must be in 1..1000" },
        { """{"class_label": 1, "cache_interval": 1001}""", "cache_interval", "cache_interval must be in 1..1000" },
        { """{"class_label": 1, "cache_interval": 2.5}""", "cache_interval", "cache_interval must be an integer" },
        { """{"class_label": 1, "cache_interval": "3"}""", "cache_interval", "cache_interval must be an integer" },
        { """{"class_label": 1, "cache_interval": 3, "cache_mode": "fast"}""", "cache_mode", "unknown cache_mode 'fast'; use reuse or taylor" },
        { """{"class_label": 1, "cache_mode": 2}""", "cache_mode", "cache_mode must be a string" },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task Bad_sampler_input_is_a_400_naming_the_field_and_its_allowed_values(string body, string field, string expected)
    {
        foreach (var route in new[] { "/v1/images", "/v1/jobs" })
        {
            var problem = await AssertProblem(await client.PostAsync(route, Json(body)), HttpStatusCode.BadRequest);
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out var messages), $"{route}: {problem}");
            Assert.Contains(messages.EnumerateArray(), m => m.GetString()!.Contains(expected));
        }
    }

    [Theory]
    [InlineData("--sampler", "euler", "unknown sampler 'euler'; use ddpm, ddim, dpmpp_2m, dpmpp_3m or unipc")]
    [InlineData("--spacing", "karras", "unknown spacing 'karras'")]
    [InlineData("--unipc-variant", "bh3", "unknown unipc variant 'bh3'; use bh1 or bh2")]
    [InlineData("--order", "4", "order must be 1, 2 or 3")]
    [InlineData("--guidance-interval", "600,100", "guidance_interval must be [lo, hi] with 0 ≤ lo < hi ≤ 1000")]
    [InlineData("--guidance-interval", "abc", "--guidance-interval must be lo,hi")]
    [InlineData("--thresholding", "true", "thresholding is for pixel-space models")]
    [InlineData("--cache-interval", "0", "cache_interval must be in 1..1000")]
    [InlineData("--cache-mode", "fast", "unknown cache mode 'fast'; use reuse or taylor")]
    public async Task Bad_sampler_flags_exit_2_with_one_line(string flag, string value, string expected)
    {
        string[] args = flag is "--sampler" ? ["sample", "--model", TestPaths.TinyModel, "--labels", "1", "--out", outDir, flag, value]
            : ["sample", "--model", TestPaths.TinyModel, "--labels", "1", "--out", outDir, "--sampler", "unipc", flag, value];
        var (code, _, err) = await Run(args);
        AssertUsageError(code, err, expected);
    }

    [Fact]
    public async Task Order_given_to_a_dpmpp_sampler_exits_2()
    {
        var (code, _, err) = await Run("sample", "--model", TestPaths.TinyModel, "--labels", "1", "--out", outDir,
            "--sampler", "dpmpp_2m", "--spacing", "logsnr", "--order", "3");
        AssertUsageError(code, err, "dpmpp_2m is order 2, or order 1 (DDIM)");
    }
}

/// <summary>A UniPC job watched from its queued state, on JobPreviewTests' server settings (small batches and a step
/// delay, so its blocker really holds the job in the queue while the test subscribes).</summary>
public sealed class SolverJobTests(JobPreviewTests.Server server) : IClassFixture<JobPreviewTests.Server>
{
    private readonly HttpClient client = server.Factory.CreateClient();

    [Fact]
    public async Task A_solver_job_reports_its_settings_and_previews_its_x0_prediction()
    {
        // Two guided images = 4 rows: they cannot join the blocker within MaxBatchRows 4, so the job waits queued.
        const string body = """{"class_label": 3, "num_images": 2, "steps": 6, "seed": 2, "sampler": "unipc", "spacing": "logsnr", "preview_every": 2}""";
        var (events, _) = await JobPreviewTests.RunWatched(server.Factory, client, body);
        var job = await client.GetJob(events[^1].Data.GetProperty("id").GetString()!);
        var parameters = job.GetProperty("parameters");
        Assert.Equal(("unipc", "logsnr", 2, "bh2"), (parameters.GetProperty("sampler").GetString(), parameters.GetProperty("spacing").GetString(),
            parameters.GetProperty("order").GetInt32(), parameters.GetProperty("unipc_variant").GetString()));
        Assert.False(parameters.TryGetProperty("guidance_interval", out _));
        // Previews every 2 steps but the last, each from the solver's x̂₀ of that model call.
        Assert.Equal([2, 4], events.Where(e => e.Type == "preview").Select(e => e.Data.GetProperty("step").GetInt32()));
        Assert.Equal("done", events[^1].Type);
    }
}
