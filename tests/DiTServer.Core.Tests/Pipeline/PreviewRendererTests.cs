using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Tests.Shared;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Step previews from x̂₀: a pixel model shows x̂₀ itself, a latent model the fixed latent→RGB projection;
/// both resized to the capped side and turned into pixels with the final images' rule.</summary>
public class PreviewRendererTests
{
    [Fact]
    public void Pixel_model_preview_is_x0_itself_and_area_averaged_when_capped()
    {
        var dir = Directory.CreateTempSubdirectory("dit-preview-").FullName;
        try
        {
            RandomModel.Write(dir, new DiTConfig { InputSize = 12, PatchSize = 4, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = 3 },
                ["a", "b", "c"]);
            using var model = LoadedModel.Load(dir);
            using var scope = NewDisposeScope();
            var x0 = randn([2, 1, 12, 12], generator: new TorchSharp.torch.Generator(5)) * 1.5f; // beyond [-1, 1] on purpose
            Assert.Null(PreviewRenderer.Unsupported(model));
            Assert.Equal(1, PreviewRenderer.Channels(model));

            var full = PreviewRenderer.Render(model, x0, 64);
            Assert.Equal(new long[] { 2, 1, 12, 12 }, full.shape);
            Assert.True(full.equal(Pixels.ToUInt8(x0)).all().item<bool>(), "an uncapped pixel-space preview must be the x̂₀ pixels");

            var small = PreviewRenderer.Render(model, x0, 6);
            Assert.Equal(new long[] { 2, 1, 6, 6 }, small.shape);
            var blocks = x0.clamp(-1, 1).view(2, 1, 6, 2, 6, 2).mean([3, 5]);                       // 2×2 area means
            Assert.True((small.to_type(int32) - Pixels.ToUInt8(blocks).to_type(int32)).abs().max().item<int>() <= 1);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Latent_model_preview_is_the_sd_latent_to_rgb_projection()
    {
        using var model = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        using var scope = NewDisposeScope();
        Assert.Null(PreviewRenderer.Unsupported(model));
        Assert.Equal((16, 3), (model.ImageSize, PreviewRenderer.Channels(model)));

        // One latent pixel per channel: each shows that channel's row of factors (R, G, B), so a transposed or
        // reordered table fails. (0.3512, 0.2297, 0.3227) → floor(((v + 1) / 2)·255 + 0.5) = (172, 157, 169), etc.
        var unit = zeros(1, 4, 8, 8);
        for (int c = 0; c < 4; c++) unit[0, c, 0, c].fill_(1);
        var at8 = PreviewRenderer.Render(model, unit, 8);                                        // latent size: no resize
        Assert.Equal(new long[] { 1, 3, 8, 8 }, at8.shape);
        byte[][] expected = [[172, 157, 169], [169, 191, 157], [91, 150, 162], [100, 94, 36]];
        for (int c = 0; c < 4; c++)
            Assert.Equal(expected[c], Enumerable.Range(0, 3).Select(r => at8[0, r, 0, c].item<byte>()).ToArray());
        Assert.Equal(128, at8[0, 0, 7, 7].item<byte>()); // zero latent → mid grey

        var x0 = randn([2, 4, 8, 8], generator: new TorchSharp.torch.Generator(6));
        Assert.Equal(new long[] { 2, 3, 16, 16 }, PreviewRenderer.Render(model, x0, 64).shape);  // enlarged to the image size
        Assert.Equal(new long[] { 2, 3, 12, 12 }, PreviewRenderer.Render(model, x0, 12).shape);  // capped
        Assert.Equal(new long[] { 2, 3, 4, 4 }, PreviewRenderer.Render(model, x0, 4).shape);     // shrunk below the latent
    }
}
