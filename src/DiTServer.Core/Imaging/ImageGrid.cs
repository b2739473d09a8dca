namespace DiTServer.Core.Imaging;

/// <summary>Tiles images like torchvision's <c>make_grid</c>: <c>nrow</c> per row, <c>padding</c> px of black
/// around and between tiles; a single image gets no grid and no padding.</summary>
public static class ImageGrid
{
    /// <param name="images">Each image's HWC pixels, all of the same size.</param>
    public static (byte[] Hwc, int Width, int Height) Tile(IReadOnlyList<byte[]> images, int width, int height, int channels, int nrow = 4, int padding = 2)
    {
        if (images.Count == 0) throw new ArgumentException("no images to tile");
        if (images.Count == 1) return (images[0], width, height);
        int cols = Math.Min(nrow, images.Count), rows = (images.Count + cols - 1) / cols;
        int cellW = width + padding, cellH = height + padding;
        int gridW = cols * cellW + padding, gridH = rows * cellH + padding;
        var grid = new byte[gridW * gridH * channels];
        for (int k = 0; k < images.Count; k++)
        {
            int x0 = (k % cols) * cellW + padding, y0 = (k / cols) * cellH + padding;
            for (int y = 0; y < height; y++)
                Buffer.BlockCopy(images[k], y * width * channels, grid, ((y0 + y) * gridW + x0) * channels, width * channels);
        }
        return (grid, gridW, gridH);
    }
}
