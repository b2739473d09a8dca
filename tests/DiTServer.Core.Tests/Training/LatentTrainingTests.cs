using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;
using DiTServer.Core.Vae;
using DiTServer.Tests.Shared;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Latent training with the fixture VAE (vae-tiny: 2× downsampling, 4 latent channels): the cache holds the
/// encoder's posterior, steps draw from it with the trainer's generator, resume is exact, the export decodes.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class LatentTrainingTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("dit-latent-tests-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static string VaeFolder => Fixtures.PathOf("vae-tiny");

    // 8×8 images → 4×4×4 latents; patch 2 gives 4 tokens.
    private static readonly DiTConfig Tiny = new()
    {
        InputSize = 4, PatchSize = 2, InChannels = 4, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = 2,
    };

    private static readonly TrainingOptions Fast = new()
    {
        BatchSize = 8, LearningRate = 1e-3, EmaDecay = 0.999, EmaWarmup = true, Seed = 7, Steps = 1000,
    };

    /// <summary>40 grayscale 8×8 bands (more than one encoder batch of 32, so the chunking is exercised).</summary>
    private IdxDataset Bands(int count = 40)
    {
        var folder = Path.Combine(dir, "bands");
        SyntheticIdx.Write(folder, count, side: 8);
        return IdxDataset.FromFolder(folder);
    }

    /// <summary>Six asymmetric RGB images in two classes: left-right flips change them, so both orientations differ.</summary>
    private ImageFolderDataset Folder()
    {
        var root = Path.Combine(dir, "folder");
        for (int i = 0; i < 6; i++)
        {
            string cls = Path.Combine(root, i % 2 == 0 ? "left" : "right");
            Directory.CreateDirectory(cls);
            using var image = new Image<Rgb24>(8, 8);
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++)
                    image[x, y] = new Rgb24((byte)(x * 30 + i * 10), (byte)(y * 25), (byte)((i % 2 == 0 ? x : 7 - x) * 35));
            image.SaveAsPng(Path.Combine(cls, $"{i}.png"));
        }
        return ImageFolderDataset.Load(root, imageSize: 8);
    }

    private static LatentSettings Settings => LatentSettings.ForFolder(VaeFolder).Settings;

    [Fact]
    public void Cached_latents_are_the_vae_posterior_of_each_image_and_are_read_back_on_the_next_run()
    {
        using var images = Bands();
        string cache = Path.Combine(dir, "run", LatentCache.FileName);
        var log = new List<string>();
        using var latents = LatentCache.LoadOrEncode(cache, images, Settings, log.Add);
        Assert.Equal((40, 4, 4, 2), (latents.Count, latents.ImageSize, latents.Channels, latents.NumClasses));
        Assert.Equal(0.18215, latents.ScalingFactor);
        Assert.Contains(log, l => l.Contains("encoding 40 images"));
        Assert.True(File.Exists(cache));

        using var scope = NewDisposeScope();
        using var vae = AutoencoderKL.FromFolder(VaeFolder);
        var (x, y) = images.Batch(arange(40L));
        Tensor mean, std;
        using (no_grad())
            (mean, std, _) = vae.Encode(x.expand(-1, 3, -1, -1)); // grayscale goes in as gray RGB, all 40 at once
        var cached = latents.Posterior;
        Assert.True(allclose(cached.Mean, mean, rtol: 1e-5, atol: 1e-6), "cached mean ≠ the encoder's mean");
        Assert.True(allclose(cached.Std, std, rtol: 1e-5, atol: 1e-6), "cached std ≠ the encoder's std");
        Assert.Null(cached.FlippedMean); // IDX data is not flipped
        Assert.True(cached.Std.gt(0).all().item<bool>());

        // Without randomness a batch is the scaled mean; a draw is mean + std·ε with ε from the given generator.
        var idx = tensor(new long[] { 3, 0, 39 });
        var (means, labels) = latents.Batch(idx);
        Assert.True(allclose(means, mean.index_select(0, idx) * 0.18215, rtol: 1e-5, atol: 1e-7));
        Assert.True(labels.equal(y.index_select(0, idx)).all().item<bool>());
        using var g1 = new Generator(5);
        using var g2 = new Generator(5);
        var (drawn, _) = latents.Draw(idx, g1);
        var eps = randn(new long[] { 3, 4, 4, 4 }, generator: g2);
        Assert.True(allclose(drawn, (mean.index_select(0, idx) + std.index_select(0, idx) * eps) * 0.18215, rtol: 1e-5, atol: 1e-6));

        // A second run on the same dataset and VAE reads the file instead of encoding again, bit for bit.
        log.Clear();
        using var again = LatentCache.LoadOrEncode(cache, images, Settings, log.Add);
        Assert.Contains(log, l => l.Contains("read 40 cached"));
        Assert.DoesNotContain(log, l => l.StartsWith("latents: encoding"));
        Assert.True(again.Posterior.Mean.equal(cached.Mean).all().item<bool>());
        Assert.True(again.Posterior.Std.equal(cached.Std).all().item<bool>());

        // Other images under the same cache file: the key differs, so they are encoded, not served stale latents.
        var other = Path.Combine(dir, "other");
        SyntheticIdx.Write(other, 40, side: 8, seed: 2);
        using var otherImages = IdxDataset.FromFolder(other);
        log.Clear();
        using var otherLatents = LatentCache.LoadOrEncode(cache, otherImages, Settings, log.Add);
        Assert.Contains(log, l => l.Contains("encoding 40 images"));
        Assert.False(otherLatents.Posterior.Mean.equal(cached.Mean).all().item<bool>());
    }

    [Fact]
    public void A_flipping_dataset_caches_the_encoding_of_each_mirrored_image()
    {
        using var images = Folder();
        using var latents = LatentCache.LoadOrEncode(Path.Combine(dir, LatentCache.FileName), images, Settings);
        Assert.True(latents.HorizontalFlip);
        using var scope = NewDisposeScope();
        using var vae = AutoencoderKL.FromFolder(VaeFolder);
        var (x, _) = images.Batch(arange(6L));
        Tensor mean, flippedMean, flippedStd;
        using (no_grad())
        {
            mean = vae.Encode(x).Mean;
            (flippedMean, flippedStd, _) = vae.Encode(x.flip(3));
        }
        var cached = latents.Posterior;
        Assert.True(allclose(cached.Mean, mean, rtol: 1e-5, atol: 1e-6));
        Assert.True(allclose(cached.FlippedMean!, flippedMean, rtol: 1e-5, atol: 1e-6));
        Assert.True(allclose(cached.FlippedStd!, flippedStd, rtol: 1e-5, atol: 1e-6));
        // Why both are encoded: mirroring the latent is not the latent of the mirrored image.
        Assert.False(allclose(cached.FlippedMean!, mean.flip(3), rtol: 1e-3, atol: 1e-3));
    }

    [Fact]
    public void Latent_training_gives_finite_falling_loss_and_exports_a_model_that_decodes_images()
    {
        using var images = Bands();
        using var latents = LatentCache.LoadOrEncode(Path.Combine(dir, LatentCache.FileName), images, Settings);
        using var trainer = new Trainer(Tiny, Fast with { BatchSize = 16, LearningRate = 3e-3 }, latents);
        var losses = Enumerable.Range(0, 60).Select(_ => trainer.TrainStep().Loss).ToArray();
        Assert.All(losses, l => Assert.True(double.IsFinite(l), $"loss {l}"));
        double first = losses.Take(10).Average(), last = losses.TakeLast(10).Average();
        Assert.True(last < first, $"loss did not fall: first 10 steps {first:F4}, last 10 {last:F4}");

        string folder = Path.Combine(dir, "export");
        ModelExport.Write(folder, "latent-test", trainer.Config, trainer.Ema.Model, trainer.Model, ["low", "high"], vae: VaeFolder);
        Assert.Equal(Path.GetFullPath(VaeFolder), ModelManifest.Load(folder).VaePath);
        using var loaded = LoadedModel.Load(folder);
        Assert.NotNull(loaded.Vae);
        Assert.Equal((8, 3), (loaded.ImageSize, loaded.ImageChannels));
        var generated = ImagePipeline.Generate(loaded, [0, 1], new SamplingOptions { Steps = 4, CfgScale = 2, Seed = 3 });
        Assert.Equal((8, 8, 3), (generated[0].Width, generated[0].Height, generated[0].Channels));
        using var png = Image.Load<Rgb24>(generated[1].Png);
        Assert.Equal((8, 8), (png.Width, png.Height));
    }

    [Fact]
    public void Resumed_latent_training_gives_the_same_weights_as_an_uninterrupted_run()
    {
        // A flipping dataset, so flip choices, posterior draws, timesteps and noise all come from the checkpointed generator.
        using var images = Folder();
        using var latents = LatentCache.LoadOrEncode(Path.Combine(dir, LatentCache.FileName), images, Settings);
        var options = Fast with { BatchSize = 4 };
        var info = new TrainingRunInfo { Config = Tiny, Options = options, Latent = Settings };
        using var straight = new Trainer(Tiny, options, latents);
        for (int i = 0; i < 6; i++) straight.TrainStep();

        string ckpt = Path.Combine(dir, "run.ckpt");
        using (var first = new Trainer(Tiny, options, latents))
        {
            for (int i = 0; i < 3; i++) first.TrainStep();
            TrainingCheckpoint.Save(ckpt, first, info);
        }
        Assert.Equal(Settings, TrainingCheckpoint.ReadInfo(ckpt).Latent);
        using var resumed = new Trainer(Tiny, options with { Seed = 99 }, latents); // everything must come from the file
        TrainingCheckpoint.Restore(ckpt, resumed);
        for (int i = 0; i < 3; i++) resumed.TrainStep();

        Assert.Equal(6, resumed.Step);
        AssertIdentical(straight.Model, resumed.Model, "model");
        AssertIdentical(straight.Ema.Model, resumed.Ema.Model, "ema");
    }

    private static void AssertIdentical(DiT expected, DiT actual, string what)
    {
        var theirs = actual.state_dict();
        foreach (var (name, e) in expected.state_dict())
            Assert.True(e.equal(theirs[name]).all().item<bool>(), $"{what}: {name} differs");
    }

    [Fact]
    public void A_changed_vae_is_refused_on_resume_and_bad_image_sizes_are_named()
    {
        string copy = Path.Combine(dir, "vae-copy");
        Directory.CreateDirectory(copy);
        foreach (var f in new[] { "config.json", AutoencoderKL.SafetensorsFileName })
            File.Copy(Path.Combine(VaeFolder, f), Path.Combine(copy, f));
        var (settings, config) = LatentSettings.ForFolder(copy);
        settings.VerifyUnchanged();
        // Replaced, not edited in place: the fixture files (and so their copies) are read-only.
        string configPath = Path.Combine(copy, "config.json"), changed = File.ReadAllText(configPath).Replace("0.18215", "0.5");
        File.Delete(configPath);
        File.WriteAllText(configPath, changed);
        var e = Assert.Throws<InvalidDataException>(settings.VerifyUnchanged);
        Assert.Contains("not the one this run was trained with", e.Message);

        Assert.Contains("not divisible by the VAE's downsampling factor 2", Assert.Throws<ArgumentException>(() => LatentShape.For(config, 9, 1)).Message);
        Assert.Contains("2 channel(s) but the VAE takes 3", Assert.Throws<ArgumentException>(() => LatentShape.For(config, 8, 2)).Message);
        Assert.Equal((4, 4), LatentShape.For(config, 8, 1));
        Assert.Throws<DirectoryNotFoundException>(() => LatentSettings.ForFolder(Path.Combine(dir, "no-vae")));
    }
}
