using DiTServer.Core.Serving;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace DiTServer.Core.Tests;

/// <summary>The automatic body limit (Serving:MaxBodyBytes 0) holds an image-to-image body of the model's size: its
/// fields, an init_image and a mask, each as the worst PNG a client may send (random RGBA pixels, stored without
/// compression, with our own metadata), in base64.</summary>
public sealed class ServingOptionsTests
{
    [Theory]
    [InlineData(28)]
    [InlineData(64)]
    [InlineData(256)]
    public void The_automatic_body_limit_holds_two_incompressible_PNGs_of_the_model_size(int size)
    {
        var png = WorstPng(size);
        int body = 1024 + 2 * (4 * ((png.Length + 2) / 3));
        int limit = new ServingOptions().BodyLimitFor(size);
        Assert.True(body <= limit, $"a {size}x{size} edit body of {body} bytes is over the automatic limit {limit}");
        Assert.True(limit < 4 * body, $"the automatic limit {limit} is far above what a {size}x{size} edit needs ({body})");
    }

    [Fact]
    public void A_configured_body_limit_wins_and_a_tiny_one_is_refused_at_start()
    {
        Assert.Equal(5000, new ServingOptions { MaxBodyBytes = 5000 }.BodyLimitFor(256));
        Assert.Contains("MaxBodyBytes", new ServingOptions { MaxBodyBytes = 100 }.Check());
        Assert.Null(new ServingOptions().Check());
    }

    private static byte[] WorstPng(int size)
    {
        var pixels = new byte[size * size * 4];
        new Random(size).NextBytes(pixels);
        using var image = Image.LoadPixelData<Rgba32>(pixels, size, size);
        image.Metadata.GetPngMetadata().TextData.Add(new PngTextData("parameters", new string('x', 1500), "", ""));
        using var ms = new MemoryStream();
        image.Save(ms, new PngEncoder
        {
            ColorType = PngColorType.RgbWithAlpha, BitDepth = PngBitDepth.Bit8,
            CompressionLevel = PngCompressionLevel.NoCompression, FilterMethod = PngFilterMethod.None,
        });
        return ms.ToArray();
    }
}
