using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace DiTServer.Api.Tests;

/// <summary>PNG uploads for the image-to-image routes: a picture with something to keep, and OpenAI-style masks.</summary>
public static class TestPngs
{
    /// <summary>An RGB picture with a diagonal gradient (something to keep), as PNG bytes.</summary>
    public static byte[] Picture(int width, int height)
    {
        using var image = new Image<Rgb24>(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                image[x, y] = new Rgb24((byte)(x * 255 / width), (byte)(y * 255 / height), (byte)((x + y) * 127 / (width + height)));
        return Png(image);
    }

    /// <summary>OpenAI's mask: the left half transparent (redrawn), the right half opaque (kept).</summary>
    public static byte[] LeftHalfTransparent(int size)
    {
        using var image = new Image<Rgba32>(size, size);
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
                image[x, y] = new Rgba32(0, 0, 0, x < size / 2 ? (byte)0 : (byte)255);
        return Png(image);
    }

    public static byte[] Png(Image image)
    {
        using var stream = new MemoryStream();
        image.SaveAsPng(stream);
        return stream.ToArray();
    }

}
