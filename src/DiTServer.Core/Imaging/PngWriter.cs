using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace DiTServer.Core.Imaging;

/// <summary>Encodes 8-bit pixels as PNG (RGB for 3 channels, grayscale for 1) with tEXt metadata chunks.</summary>
public static class PngWriter
{
    /// <param name="hwc">Pixels in row-major HWC order.</param>
    /// <param name="metadata">Keyword → text, written as tEXt chunks (e.g. model, class, steps, sampler, cfg_scale, seed).</param>
    public static byte[] Encode(byte[] hwc, int width, int height, int channels, IEnumerable<KeyValuePair<string, string>>? metadata = null)
    {
        using Image image = channels switch
        {
            3 => Image.LoadPixelData<Rgb24>(hwc, width, height),
            1 => Image.LoadPixelData<L8>(hwc, width, height),
            _ => throw new ArgumentException($"PNG needs 1 or 3 channels, got {channels}"),
        };
        var png = image.Metadata.GetPngMetadata();
        foreach (var (key, value) in metadata ?? [])
            png.TextData.Add(new PngTextData(key, value, string.Empty, string.Empty));
        var encoder = new PngEncoder
        {
            ColorType = channels == 3 ? PngColorType.Rgb : PngColorType.Grayscale,
            BitDepth = PngBitDepth.Bit8,
        };
        using var ms = new MemoryStream();
        image.Save(ms, encoder);
        return ms.ToArray();
    }

    /// <summary>Reads back the text chunks of a PNG (for tests and tools).</summary>
    public static IReadOnlyDictionary<string, string> ReadText(byte[] png)
    {
        using var image = Image.Load(png);
        return image.Metadata.GetPngMetadata().TextData.ToDictionary(t => t.Keyword, t => t.Value);
    }
}
