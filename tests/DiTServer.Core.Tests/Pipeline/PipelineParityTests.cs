using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Diffusion;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using DiTServer.Core.Vae;
using DiTServer.Tests.Shared;
using SixLabors.ImageSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Seed → latents → VAE → pixels → PNG, against the official pipeline's pixels.</summary>
public class PipelineParityTests
{
    public static IEnumerable<object[]> Cases() => Enumerable.Range(0, 4).Select(k => new object[] { k });

    [Theory]
    [MemberData(nameof(Cases))]
    public void Pixels_from_the_seed_match_official(int k)
    {
        using var model = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        using var scope = NewDisposeScope();
        var options = Fixtures.SampleOptions(k);
        var labels = Fixtures.Load($"dit-tiny/sample-{k}.safetensors")["labels"].data<long>().Select(l => (int)l).ToArray();
        var images = ImagePipeline.Generate(model, labels, options);
        var expected = Fixtures.Load($"dit-tiny/pixels-{k}.safetensors")["pixels"];
        Assert.Equal(labels.Length, images.Count);
        for (int i = 0; i < images.Count; i++)
        {
            var reference = expected[i].permute(1, 2, 0).contiguous().data<byte>().ToArray();
            AssertPixelsClose(reference, images[i].Hwc, $"sample-{k} image {i}");
        }
    }

    [Fact]
    public void Grid_and_single_image_pixels_match_save_image()
    {
        using var scope = NewDisposeScope();
        var f = Fixtures.Load("extra/e2e_pixels/e2e.safetensors");
        var pixels = Pixels.ToUInt8(f["decoded"]); // (3, 3, 64, 64)
        var tiles = Enumerable.Range(0, 3).Select(i => Pixels.ToHwcBytes(pixels[i])).ToList();
        var (grid, w, h) = ImageGrid.Tile(tiles, 64, 64, 3);
        Assert.Equal((200, 68), (w, h));
        AssertPixelsClose(f["png_grid_pixels"].data<byte>().ToArray(), grid, "grid");
        AssertPixelsClose(f["png_single_pixels"].data<byte>().ToArray(), tiles[0], "single");
        AssertPixelsClose(f["sample_ddp_pixels"].data<byte>().ToArray(), tiles.SelectMany(t => t).ToArray(), "sample_ddp");
    }

    [Fact]
    public void Latents_to_decoded_images_through_the_8x_vae_match_official()
    {
        using var dit = DiTParityTests.LoadTiny("extra/dit_tiny/model.pt");
        using var vae = AutoencoderKL.FromFolder(Fixtures.PathOf("extra/vae_tiny_f8"));
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var f = Fixtures.Load("extra/e2e_pixels/e2e.safetensors");
        int n = (int)f["labels"].shape[0];
        var d = GaussianDiffusion.Create("10");
        var x = f["initial_noise"];
        for (int s = 0; s < 10; s++)
        {
            int i = 9 - s;
            var output = Denoiser.Forward(dit, x, full(n, (long)d.TimestepMap[i], dtype: int64), f["labels"], Enumerable.Repeat(4.0, n).ToArray(),
                GuidanceMode.Official);
            x = d.DdpmStep(output, x, full(n, (long)i, dtype: int64), f["step_noise"][s][..n]);
        }
        double maxRef = f["latents"].abs().max().item<float>();
        Assert.True((x - f["latents"]).abs().max().item<float>() <= 1e-4 * maxRef);
        Fixtures.AssertClose(f["decoded"], vae.Decode(f["latents"] / vae.Config.ScalingFactor));
    }

    [Fact]
    public void Png_carries_generation_metadata_and_is_byte_identical_across_runs()
    {
        using var model = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var options = new SamplingOptions { Steps = 3, CfgScale = 2.5, Seed = 42 };
        var a = ImagePipeline.Generate(model, new[] { 4, 2 }, options);
        var b = ImagePipeline.Generate(model, new[] { 4, 2 }, options);
        Assert.Equal(a[1].Png, b[1].Png);
        var text = PngWriter.ReadText(a[1].Png);
        Assert.Equal("dit-tiny", text["model"]);
        Assert.Equal("2", text["class"]);
        Assert.Equal("3", text["steps"]);
        Assert.Equal("ddpm", text["sampler"]);
        Assert.Equal("2.5", text["cfg_scale"]);
        Assert.Equal("42", text["seed"]);
    }

    [Fact]
    public void Pixel_space_grayscale_model_writes_grayscale_png()
    {
        // A 1-channel pixel-space model (vae: null) saved by us and served from its manifest.
        var dir = Directory.CreateTempSubdirectory("dit-pixel-").FullName;
        try
        {
            RandomModel.Write(dir, new DiTConfig { InputSize = 12, PatchSize = 4, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = 3 },
                ["circle", "square", "triangle"]);
            using var loaded = LoadedModel.Load(dir);
            Assert.Equal((12, 1), (loaded.ImageSize, loaded.ImageChannels));
            Assert.Equal(2, loaded.Classes.TryResolve("Triangle", 3, out var id, out _) ? id : -1);
            var images = ImagePipeline.Generate(loaded, new[] { 2 }, new SamplingOptions { Steps = 3, Seed = 1 });
            using var png = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.L8>(images[0].Png);
            Assert.Equal((12, 12), (png.Width, png.Height));
            Assert.Equal(SixLabors.ImageSharp.Formats.Png.PngColorType.Grayscale, png.Metadata.GetPngMetadata().ColorType);
            Assert.Equal("triangle", PngWriter.ReadText(images[0].Png)["class_name"]);
        }
        finally { Directory.Delete(dir, true); }
    }

    internal static void AssertPixelsClose(byte[] expected, byte[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int maxDiff = 0, off = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            int d = Math.Abs(expected[i] - actual[i]);
            maxDiff = Math.Max(maxDiff, d);
            if (d > 0) off++;
        }
        Assert.True(maxDiff <= 1, $"{what}: max pixel difference {maxDiff} ({off} values differ)");
    }
}
