using SkiaSharp;

/// <summary>A figure of small images side by side: each tile an image scaled up with nearest-neighbour sampling (so
/// 28×28 pixels stay visible as pixels), its caption under it, <c>columns</c> tiles per row.</summary>
internal static class TileFigure
{
    private const int Scale = 5, Pad = 12, CaptionHeight = 22;

    /// <param name="tiles">"caption=path.png" each; an empty path leaves the tile blank.</param>
    public static int Write(string outPath, int columns, IReadOnlyList<string> tiles)
    {
        // The path follows the last '=', so a caption may hold one ("s=0.3").
        var parsed = tiles.Select(t => t.LastIndexOf('=')).Zip(tiles, (at, t) => at < 0 ? (Caption: t, Path: "") : (Caption: t[..at], Path: t[(at + 1)..]))
            .ToList();
        var images = parsed.Select(t => t.Path.Length == 0 ? null : SKImage.FromEncodedData(t.Path)).ToList();
        if (images.All(i => i is null)) { Console.Error.WriteLine("no images to tile"); return 2; }
        int side = images.OfType<SKImage>().Max(i => Math.Max(i.Width, i.Height)) * Scale;
        int rows = (parsed.Count + columns - 1) / columns;
        int width = columns * (side + Pad) + Pad, height = rows * (side + CaptionHeight + Pad) + Pad;
        using var surface = SKSurface.Create(new SKImageInfo(width, height));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var font = new SKFont(SKTypeface.Default, 14);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var frame = new SKPaint { Color = SKColors.Gray, Style = SKPaintStyle.Stroke, StrokeWidth = 1 };
        for (int k = 0; k < parsed.Count; k++)
        {
            float x = Pad + k % columns * (side + Pad), y = Pad + k / columns * (side + CaptionHeight + Pad);
            if (images[k] is { } image)
            {
                canvas.DrawImage(image, new SKRect(x, y, x + side, y + side), new SKSamplingOptions(SKFilterMode.Nearest), null);
                canvas.DrawRect(new SKRect(x - 0.5f, y - 0.5f, x + side + 0.5f, y + side + 0.5f), frame); // white images need an edge
            }
            canvas.DrawText(parsed[k].Caption, x + side / 2f, y + side + 16, SKTextAlign.Center, font, ink);
        }
        using var png = surface.Snapshot().Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(outPath, png.ToArray());
        foreach (var image in images) image?.Dispose();
        Console.WriteLine($"wrote {outPath}");
        return 0;
    }
}
