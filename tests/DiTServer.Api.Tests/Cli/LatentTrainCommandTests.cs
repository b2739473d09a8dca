using DiTServer.Core.Pipeline;
using DiTServer.Api.Cli;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using static DiTServer.Api.Tests.CliRun;

namespace DiTServer.Api.Tests;

/// <summary>`train --vae` end to end with the fixture VAE (vae-tiny, 2× downsampling): encode once, train on latents,
/// resume from the cache, export a model.json that points at the VAE, and `sample` decodes PNGs of the image size.</summary>
public class LatentTrainCommandTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-latent-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private static string Vae => TestPaths.Fixture("vae-tiny");

    private string[] LatentRun(string data, string run, int steps, string vae) =>
    [
        "train", "--data", data, "--out", run, "--vae", vae, "--hidden", "32", "--depth", "1", "--heads", "2", "--patch", "2",
        "--steps", steps.ToString(), "--batch", "4", "--lr", "1e-3", "--ema-warmup", "--log-every", "2", "--checkpoint-every", "2",
        "--threads", "1", "--class-names", "low,high",
    ];

    [Fact]
    public async Task Trains_on_cached_latents_resumes_and_the_export_samples_decoded_pngs()
    {
        string data = Path.Combine(root, "data"), run = Path.Combine(root, "run");
        SyntheticIdx.Write(data, count: 16, side: 8, classes: 2);

        var (code, stdout, err) = await Run(LatentRun(data, run, 4, Vae));
        Assert.True(code == 0, err + stdout);
        Assert.Contains("encoding 16 images", stdout);
        Assert.Contains("4×4² latent input", stdout);
        Assert.True(File.Exists(Path.Combine(run, LatentCache.FileName)));
        var latent = TrainingCheckpoint.ReadInfo(Path.Combine(run, TrainingSession.CheckpointFile)).Latent;
        Assert.Equal((Path.GetFullPath(Vae), 0.18215), (latent!.Vae, latent.ScalingFactor));

        // The resume reads the cache instead of encoding again, and refuses another VAE.
        (code, stdout, err) = await Run("train", "--out", run, "--resume", "--steps", "6", "--threads", "1");
        Assert.True(code == 0, err + stdout);
        Assert.Contains("read 16 cached encodings", stdout);
        Assert.DoesNotContain("latents: encoding", stdout);
        Assert.Contains("from step 4 to 6", stdout);
        (code, _, err) = await Run("train", "--out", run, "--resume", "--steps", "8", "--vae", TestPaths.TinyModel);
        Assert.Equal(CommandLine.ExitUsage, code);
        Assert.Contains("resuming with a different VAE", err);
        Assert.Single(err.Trim().Split('\n'));

        Assert.Equal(Path.GetFullPath(Vae), ModelManifest.Load(run).VaePath);
        string samples = Path.Combine(root, "samples");
        (code, _, err) = await Run("sample", "--model", run, "--labels", "0,1", "--steps", "2", "--seed", "1", "--out", samples);
        Assert.True(code == 0, err);
        for (int i = 0; i < 2; i++)
        {
            using var png = Image.Load<Rgb24>(Path.Combine(samples, $"{i}.png"));
            Assert.Equal((8, 8), (png.Width, png.Height)); // 4×4 latents decoded by the 2× VAE
        }

        string exported = Path.Combine(root, "exported");
        (code, _, err) = await Run("export", "--checkpoint", run, "--out", exported);
        Assert.True(code == 0, err);
        using var served = LoadedModel.Load(exported);
        Assert.NotNull(served.Vae);
        Assert.Equal(8, served.ImageSize);
    }

    [Theory]
    [InlineData("does not exist", "--vae", "/nonexistent/vae")]
    [InlineData("not divisible by the VAE's downsampling factor 2", "--pad-to", "9")]
    [InlineData("divisible by patch_size", "--patch", "3")]
    public async Task Bad_latent_input_exits_with_code_2_and_one_line(string expected, string option, string value)
    {
        string data = Path.Combine(root, "data");
        SyntheticIdx.Write(data, count: 8, side: 8);
        var (code, _, err) = await Run(WithOption(LatentRun(data, Path.Combine(root, "bad"), 2, Vae), option, value));
        AssertUsageError(code, err, expected);
    }

    [Fact]
    public async Task A_vae_folder_without_weights_is_named()
    {
        string data = Path.Combine(root, "data"), vae = Path.Combine(root, "half-vae");
        SyntheticIdx.Write(data, count: 8, side: 8);
        Directory.CreateDirectory(vae);
        File.Copy(Path.Combine(Vae, "config.json"), Path.Combine(vae, "config.json"));
        var (code, _, err) = await Run(LatentRun(data, Path.Combine(root, "bad"), 2, vae));
        Assert.Equal(CommandLine.ExitUsage, code);
        Assert.Contains("has neither diffusion_pytorch_model.safetensors nor", err);
        Assert.Single(err.Trim().Split('\n'));
    }
}
