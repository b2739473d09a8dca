using DiTServer.Api.Cli;
using DiTServer.Tests.Shared;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp.PyBridge;
using static DiTServer.Api.Tests.CliRun;

namespace DiTServer.Api.Tests;

/// <summary>The `sample` verb end to end on the fixtures' tiny model: official pixels, determinism, and exit code 2 on bad input.</summary>
public class SampleCommandTests : IDisposable
{
    private readonly string outDir = Directory.CreateTempSubdirectory("dit-sample-").FullName;

    public void Dispose() => Directory.Delete(outDir, recursive: true);

    [Fact]
    public async Task Writes_one_png_per_label_with_the_official_pixels()
    {
        var (code, _, err) = await Run("sample", "--model", TestPaths.TinyModel, "--labels", "1,7", "--steps", "10",
            "--cfg", "4", "--seed", "1234", "--sampler", "ddpm", "--out", outDir);
        Assert.True(code == 0, err);
        var expected = Safetensors.LoadStateDict(TestPaths.Fixture("dit-tiny/pixels-0.safetensors"))["pixels"]; // (2, 3, 16, 16)
        for (int i = 0; i < 2; i++)
        {
            using var image = Image.Load<Rgb24>(Path.Combine(outDir, $"{i}.png"));
            Assert.Equal((16, 16), (image.Width, image.Height));
            var reference = expected[i].permute(1, 2, 0).contiguous().data<byte>().ToArray();
            var pixels = new byte[16 * 16 * 3];
            image.CopyPixelDataTo(pixels);
            int maxDiff = pixels.Zip(reference, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(maxDiff <= 1, $"image {i}: max pixel difference {maxDiff}");
        }
    }

    [Fact]
    public async Task Bf16_sample_runs_and_its_png_says_so()
    {
        string fp32 = Path.Combine(outDir, "fp32"), bf16 = Path.Combine(outDir, "bf16");
        foreach (var (dir, precision) in new[] { (fp32, "fp32"), (bf16, "bf16") })
        {
            var (code, _, err) = await Run("sample", "--model", TestPaths.TinyModel, "--labels", "3", "--steps", "4", "--seed", "5", "--precision", precision,
                "--out", dir);
            Assert.True(code == 0, err);
        }
        var text = System.Text.Encoding.Latin1.GetString(File.ReadAllBytes(Path.Combine(bf16, "0.png")));
        Assert.Contains("precision\0bf16", text); // a tEXt chunk: keyword, NUL, value
        Assert.DoesNotContain("precision\0", System.Text.Encoding.Latin1.GetString(File.ReadAllBytes(Path.Combine(fp32, "0.png"))));
    }

    [Fact]
    public async Task Same_seed_gives_identical_png_bytes()
    {
        string a = Path.Combine(outDir, "a"), b = Path.Combine(outDir, "b");
        foreach (var dir in new[] { a, b })
        {
            var (code, _, err) = await Run("sample", "--model", TestPaths.TinyModel, "--labels", "3,5", "--steps", "4", "--seed", "99", "--out", dir);
            Assert.True(code == 0, err);
        }
        for (int i = 0; i < 2; i++)
            Assert.Equal(File.ReadAllBytes(Path.Combine(a, $"{i}.png")), File.ReadAllBytes(Path.Combine(b, $"{i}.png")));
    }

    [Theory]
    [InlineData("out of range", "--labels", "11")]
    [InlineData("unknown class", "--labels", "zebra")]
    [InlineData("steps", "--steps", "0")]
    [InlineData("cfg_scale", "--cfg", "0.5")]
    [InlineData("unknown sampler", "--sampler", "euler")]
    [InlineData("unknown guidance", "--guidance", "some")]
    [InlineData("CUDA", "--device", "cuda")]
    [InlineData("tf32 needs a CUDA device", "--precision", "tf32")]
    [InlineData("unknown precision", "--precision", "fp8")]
    public async Task Bad_options_exit_2_with_one_line(string expected, string option, string value)
    {
        var (code, _, err) = await Run(WithOption(["sample", "--model", TestPaths.TinyModel, "--labels", "1", "--steps", "2", "--out", outDir], option, value));
        AssertUsageError(code, err, expected, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Writes a PNG of random RGB pixels (or a top-half-white mask) into the test folder.</summary>
    private string WritePng(string name, int size, bool mask = false)
    {
        var bytes = new byte[size * size * (mask ? 1 : 3)];
        if (mask) for (int i = 0; i < size * size / 2; i++) bytes[i] = 255;
        else new Random(size).NextBytes(bytes);
        var path = Path.Combine(outDir, name);
        File.WriteAllBytes(path, DiTServer.Core.Imaging.PngWriter.Encode(bytes, size, size, mask ? 1 : 3));
        return path;
    }

    [Fact]
    public async Task Init_strength_and_mask_edit_the_image_as_the_api_does()
    {
        string init = WritePng("init.png", 16), mask = WritePng("mask.png", 16, mask: true);
        var (code, stdout, err) = await Run("sample", "--model", TestPaths.TinyModel, "--labels", "2,2", "--steps", "10", "--seed", "8",
            "--sampler", "ddim", "--init", init, "--strength", "0.5", "--mask", mask, "--out", Path.Combine(outDir, "edit"));
        Assert.True(code == 0, err);
        Assert.Contains("5 of 10 ddim steps, strength 0.5, mask 128 of 256 pixels redrawn", stdout);
        using var model = DiTServer.Core.Pipeline.LoadedModel.Load(TestPaths.TinyModel);
        using var initImage = Image.Load<Rgb24>(init);
        var initPixels = new byte[16 * 16 * 3];
        initImage.CopyPixelDataTo(initPixels);
        var maskBytes = Enumerable.Range(0, 256).Select(i => i < 128 ? (byte)255 : (byte)0).ToArray();
        var expected = DiTServer.Core.Pipeline.ImagePipeline.Generate(model, [2, 2],
            new DiTServer.Core.Sampling.SamplingOptions { Sampler = DiTServer.Core.Sampling.SamplerKind.Ddim, Steps = 10, CfgScale = 4, Seed = 8 },
            edit: new DiTServer.Core.Sampling.ImageEdit(initPixels, 16, 3, 0.5, maskBytes));
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(expected[i].Png, File.ReadAllBytes(Path.Combine(outDir, "edit", $"{i}.png")));
            Assert.Equal(initPixels[(128 * 3)..], expected[i].Hwc[(128 * 3)..]); // the black (bottom) half is the input's
        }
    }

    [Theory]
    [InlineData("--strength applies only with --init", "--strength", "0.5")]
    [InlineData("--mask applies only with --init", "--mask", "m.png")]
    [InlineData("--strength must be in (0, 1]", "--init", "16.png", "--strength", "0")]
    [InlineData("--strength must be in (0, 1]", "--init", "16.png", "--strength", "1.5")]
    [InlineData("--init must be 16x16 pixels (the model's image size), got 8x8", "--init", "8.png")]
    [InlineData("--mask must be 16x16 pixels (the model's image size), got 8x8", "--init", "16.png", "--mask", "8.png")]
    [InlineData("--init is not a PNG", "--init", "model.json")]
    [InlineData("--init: cannot read", "--init", "missing.png")]
    public async Task Bad_edit_options_exit_2_with_one_line(string expected, params string[] options)
    {
        WritePng("16.png", 16);
        WritePng("8.png", 8);
        WritePng("m.png", 16, mask: true);
        File.WriteAllText(Path.Combine(outDir, "model.json"), "{}");
        var args = new List<string> { "sample", "--model", TestPaths.TinyModel, "--labels", "1", "--steps", "2", "--out", Path.Combine(outDir, "o") };
        args.AddRange(options.Select(o => o.EndsWith(".png") || o.EndsWith(".json") ? Path.Combine(outDir, o) : o));
        var (code, _, err) = await Run(args.ToArray());
        AssertUsageError(code, err, expected);
    }

    [Fact]
    public async Task Out_of_range_index_names_the_range()
    {
        var (code, _, err) = await Run("sample", "--model", TestPaths.TinyModel, "--labels", "1,12", "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("0..9", err);
    }

    [Fact]
    public async Task Missing_model_path_exits_2()
    {
        var (code, _, err) = await Run("sample", "--model", "/nonexistent/model", "--labels", "1", "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("/nonexistent/model", err);
        Assert.Single(err.Trim().Split('\n'));
    }

    [Fact]
    public async Task Malformed_manifest_exits_2()
    {
        var manifest = Path.Combine(outDir, "model.json");
        File.WriteAllText(manifest, "{ \"architecture\": \"DiT-S/2\", \"weights\": ");
        var (code, _, err) = await Run("sample", "--model", manifest, "--labels", "1", "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("malformed JSON", err);
    }

    [Fact]
    public async Task Weights_that_do_not_fit_the_architecture_exit_2_naming_the_key()
    {
        // dit-tiny weights declared as hidden_size 32: every shape is wrong, the error names one key and both shapes.
        var manifest = Path.Combine(outDir, "model.json");
        File.WriteAllText(manifest, $$"""
            { "architecture": { "depth": 2, "hidden_size": 32, "num_heads": 4, "patch_size": 2 },
              "input_size": 8, "in_channels": 4, "num_classes": 10, "learn_sigma": true,
              "weights": "{{TestPaths.Fixture("dit-tiny/model.safetensors")}}", "vae": null }
            """);
        var (code, _, err) = await Run("sample", "--model", manifest, "--labels", "1", "--out", outDir);
        Assert.Equal(2, code);
        Assert.Matches(@"'[a-z_.0-9]+' has shape \[[0-9, ]+\] in the file but the model expects \[[0-9, ]+\]", err);
    }

    [Fact]
    public async Task Missing_required_option_exits_2()
    {
        var (code, _, err) = await Run("sample", "--labels", "1", "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("--model", err);
    }
}

internal static class TestPaths
{
    public static string TinyModel => FixturePaths.Of("dit-tiny");
    public static string Fixture(string relative) => FixturePaths.Of(relative);
}
