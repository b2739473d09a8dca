using System.Buffers.Binary;
using DiTServer.Core.Imaging;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace DiTServer.Core.Tests;

/// <summary>The one reader of uploaded PNGs: header checks before decoding, conversion to the model's channels, masks
/// from luminance or transparency, and the square resize the OpenAI-style routes ask for.</summary>
public class PngImageReaderTests
{
    private static byte[] Png<TPixel>(int width, int height, Func<int, int, TPixel> pixel) where TPixel : unmanaged, IPixel<TPixel>
    {
        using var image = new Image<TPixel>(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                image[x, y] = pixel(x, y);
        using var ms = new MemoryStream();
        image.SaveAsPng(ms);
        return ms.ToArray();
    }

    /// <summary>A valid PNG whose IHDR is rewritten to claim another size: nothing after the header matches it.</summary>
    private static byte[] Claiming(uint width, uint height)
    {
        var png = Png(1, 1, (_, _) => new L8(0));
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(16), width);
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(20), height);
        return png;
    }

    [Fact]
    public void A_header_over_the_pixel_limit_is_refused_before_decoding()
    {
        // 40 000² pixels would be 1.6 GB decoded; the file is 67 bytes. The message is the header's, not a decoder's.
        var e = Assert.Throws<ImageInputException>(() => PngImageReader.Pixels(Claiming(40_000, 40_000), 28, 1, "init_image"));
        Assert.Equal("init_image", e.ParamName);
        Assert.Equal("init_image is 40000x40000 pixels, over the limit of 16777216 pixels (4096x4096)", e.Reason);
        Assert.Contains("over the limit", Assert.Throws<ImageInputException>(() => PngImageReader.Mask(Claiming(4096, 4097), 28, "mask")).Reason);
    }

    [Theory]
    [InlineData(new byte[] { 0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0, 0 }, "is not a PNG")]
    [InlineData(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13 }, "header (IHDR chunk) is missing or damaged")]
    [InlineData(new byte[0], "is not a PNG")]
    public void Other_files_are_refused_by_what_they_lack(byte[] file, string expected) =>
        Assert.Contains(expected, Assert.Throws<ImageInputException>(() => PngImageReader.Header(file, "image")).Reason);

    [Fact]
    public void A_good_header_with_damaged_data_is_refused_when_decoded()
    {
        var png = Png(28, 28, (x, y) => new L8((byte)(x * 9)));
        for (int i = 45; i < png.Length - 12; i++) png[i] ^= 0x33; // the IDAT's data and CRC
        PngImageReader.CheckHeader(png, 28, "init_image");       // the header alone is fine
        Assert.Contains("is not a valid PNG", Assert.Throws<ImageInputException>(() => PngImageReader.Pixels(png, 28, 1, "init_image")).Reason);
    }

    [Fact]
    public void Another_size_names_the_expected_one_and_square_images_may_be_resized()
    {
        var png = Png(32, 32, (x, y) => new Rgb24((byte)(8 * x), (byte)(8 * y), 0));
        Assert.Equal("image must be 28x28 pixels (the model's image size), got 32x32",
            Assert.Throws<ImageInputException>(() => PngImageReader.Pixels(png, 28, 3, "image")).Reason);
        Assert.Equal(28 * 28 * 3, PngImageReader.Pixels(png, 28, 3, "image", resizeSquare: true).Length);
        var wide = Png(40, 20, (_, _) => new Rgb24(1, 2, 3));
        Assert.Equal("image must be square (it is resized to the model's 28x28), got 40x20",
            Assert.Throws<ImageInputException>(() => PngImageReader.Pixels(wide, 28, 3, "image", resizeSquare: true)).Reason);
    }

    [Fact]
    public void Pixels_come_in_the_models_channels()
    {
        var rgba = Png(2, 2, (x, y) => new Rgba32(200, 100, 50, (byte)(x == 0 ? 0 : 255)));
        Assert.Equal(Enumerable.Repeat(new byte[] { 200, 100, 50 }, 4).SelectMany(p => p), PngImageReader.Pixels(rgba, 2, 3, "init_image"));
        var gray = PngImageReader.Pixels(rgba, 2, 1, "init_image");
        Assert.All(gray, v => Assert.InRange(v, 115, 125)); // luminance of (200, 100, 50), alpha dropped
        var l8 = Png(2, 2, (x, y) => new L8((byte)(10 * (x + 2 * y))));
        Assert.Equal(new byte[] { 0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30 }, PngImageReader.Pixels(l8, 2, 3, "init_image"));
    }

    [Fact]
    public void Masks_redraw_white_or_transparent_pixels()
    {
        var png = Png(2, 2, (x, y) => new Rgba32((byte)(x == 0 ? 255 : 0), (byte)(x == 0 ? 255 : 0), (byte)(x == 0 ? 255 : 0), (byte)(y == 0 ? 0 : 255)));
        // Row-major: (0,0) white transparent, (1,0) black transparent, (0,1) white opaque, (1,1) black opaque.
        Assert.Equal(new byte[] { 255, 0, 255, 0 }, PngImageReader.Mask(png, 2, "mask"));
        Assert.Equal(new byte[] { 255, 255, 0, 0 }, PngImageReader.Mask(png, 2, "mask", MaskSource.Transparency));
    }
}
