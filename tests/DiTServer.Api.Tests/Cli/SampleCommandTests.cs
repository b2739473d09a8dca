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
