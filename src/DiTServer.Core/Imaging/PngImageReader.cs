using System.Buffers.Binary;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using SixLabors.ImageSharp.Processing.Processors.Transforms;

namespace DiTServer.Core.Imaging;

/// <summary>Reads the PNGs a request uploads (an init image, a mask) for a model's image size and channels, checking
/// the header before anything is decoded: a small file that claims a huge image is refused before it can allocate it.
/// One reader for the native API, the OpenAI-style routes and the CLI, so they refuse the same files in the same words.</summary>
public static class PngImageReader
{
    /// <summary>Most pixels (width × height) a header may claim: 4096². Decoding allocates by the header's size.</summary>
    public const long MaxPixels = 4096L * 4096;

    private static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Width and height from the IHDR chunk, which must come first (PNG spec §5.2, §11.2.2).</summary>
    /// <exception cref="ImageInputException">Not a PNG, a damaged header, or more than <see cref="MaxPixels"/> pixels.</exception>
    public static (int Width, int Height) Header(ReadOnlySpan<byte> png, string field)
    {
        if (png.Length < 8 || !png[..8].SequenceEqual(Signature))
            throw new ImageInputException(field, $"{field} is not a PNG (it lacks the PNG signature); send a PNG file{Encoded(field)}");
        if (png.Length < 8 + 8 + 13 + 4 || BinaryPrimitives.ReadUInt32BigEndian(png[8..]) != 13 || !png[12..16].SequenceEqual("IHDR"u8))
            throw new ImageInputException(field, $"{field} is not a valid PNG: its header (IHDR chunk) is missing or damaged");
        long width = BinaryPrimitives.ReadUInt32BigEndian(png[16..]), height = BinaryPrimitives.ReadUInt32BigEndian(png[20..]);
        if (width == 0 || height == 0 || width > int.MaxValue || height > int.MaxValue)
            throw new ImageInputException(field, $"{field} is not a valid PNG: its header says {width}x{height} pixels");
        if (width * height > MaxPixels)
            throw new ImageInputException(field, $"{field} is {width}x{height} pixels, over the limit of {MaxPixels} pixels (4096x4096)");
        return ((int)width, (int)height);
    }

    /// <summary>An init image: HWC uint8 at <paramref name="size"/>² with <paramref name="channels"/> channels (RGB
    /// becomes grayscale by luminance for a 1-channel model, grayscale is repeated for RGB; alpha is dropped).</summary>
    /// <param name="resizeSquare">Resize a square image of another size (bicubic); false = refuse any other size.</param>
    /// <exception cref="ImageInputException">Not a PNG, damaged, over the pixel limit, or of another size.</exception>
    public static byte[] Pixels(byte[] png, int size, int channels, string field, bool resizeSquare = false)
    {
        CheckHeader(png, size, field, resizeSquare);
        if (channels == 1)
        {
            using var gray = Decode<L8>(png, field);
            Fit(gray, size, KnownResamplers.Bicubic);
            return Bytes(gray, 1);
        }
        if (channels != 3) throw new ArgumentOutOfRangeException(nameof(channels), channels, "a model's images have 1 or 3 channels");
        using var rgb = Decode<Rgb24>(png, field);
        Fit(rgb, size, KnownResamplers.Bicubic);
        return Bytes(rgb, 3);
    }

    /// <summary>A mask: one byte per pixel at <paramref name="size"/>², 255 = redraw, 0 = keep.</summary>
    /// <param name="resizeSquare">Resize a square mask of another size (nearest neighbour, so it stays two-valued).</param>
    /// <exception cref="ImageInputException">Not a PNG, damaged, over the pixel limit, or of another size.</exception>
    public static byte[] Mask(byte[] png, int size, string field, MaskSource source = MaskSource.Luminance, bool resizeSquare = false)
    {
        CheckHeader(png, size, field, resizeSquare);
        using var image = Decode<La16>(png, field);
        Fit(image, size, KnownResamplers.NearestNeighbor);
        var mask = new byte[size * size];
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < rows.Height; y++)
            {
                var row = rows.GetRowSpan(y);
                for (int x = 0; x < row.Length; x++)
                    mask[y * size + x] = (source == MaskSource.Luminance ? row[x].L >= 128 : row[x].A < 128) ? (byte)255 : (byte)0;
            }
        });
        return mask;
    }

    /// <summary>Checks, from the header alone, that a PNG can be used for a model of image side <paramref name="size"/>:
    /// a PNG, within <see cref="MaxPixels"/>, and size × size (or square, with <paramref name="resizeSquare"/>).</summary>
    /// <exception cref="ImageInputException">What is wrong, in the words every route uses.</exception>
    public static void CheckHeader(ReadOnlySpan<byte> png, int size, string field, bool resizeSquare = false)
    {
        var (width, height) = Header(png, field);
        if (width == size && height == size) return;
        if (resizeSquare && width == height) return;
        throw new ImageInputException(field, resizeSquare
            ? $"{field} must be square (it is resized to the model's {size}x{size}), got {width}x{height}"
            : $"{field} must be {size}x{size} pixels (the model's image size), got {width}x{height}");
    }

    private static Image<TPixel> Decode<TPixel>(byte[] png, string field) where TPixel : unmanaged, IPixel<TPixel>
    {
        try { return Image.Load<TPixel>(Configuration.Default, png, new PngDecoder()); }
        catch (Exception e) when (e is ImageFormatException or UnknownImageFormatException or InvalidDataException or NotSupportedException)
        {
            throw new ImageInputException(field, $"{field} is not a valid PNG: {e.Message}");
        }
    }

    private static void Fit<TPixel>(Image<TPixel> image, int size, IResampler resampler) where TPixel : unmanaged, IPixel<TPixel>
    {
        if (image.Width != size || image.Height != size) image.Mutate(c => c.Resize(size, size, resampler));
    }

    private static byte[] Bytes<TPixel>(Image<TPixel> image, int channels) where TPixel : unmanaged, IPixel<TPixel>
    {
        var hwc = new byte[image.Width * image.Height * channels];
        image.CopyPixelDataTo(hwc);
        return hwc;
    }

    private static string Encoded(string field) => field is "init_image" or "mask" ? " encoded as base64" : "";
}
