using static TorchSharp.torch;

namespace DiTServer.Core.Model;

/// <summary>Fixed 2-D sin-cos position embedding of MAE, as DiT's <c>get_2d_sincos_pos_embed</c>.</summary>
public static class PositionEmbedding
{
    /// <summary>(grid², dim) float32; computed in float64 like the numpy original, then cast.</summary>
    /// <remarks>The original builds <c>meshgrid(grid_w, grid_h)</c>, so the first dim/2 channels encode the
    /// column index and the last dim/2 the row index; each half is [sin | cos].</remarks>
    public static Tensor SinCos2D(int dim, int gridSize)
    {
        if (dim % 4 != 0) throw new ArgumentException($"embedding dim {dim} must be divisible by 4");
        int quarter = dim / 4;
        var omega = new double[quarter];
        for (int d = 0; d < quarter; d++) omega[d] = 1.0 / Math.Pow(10000, d / (double)quarter);

        var data = new float[gridSize * gridSize * dim];
        for (int row = 0; row < gridSize; row++)
        for (int col = 0; col < gridSize; col++)
        {
            int token = row * gridSize + col, o = token * dim;
            for (int d = 0; d < quarter; d++)
            {
                double c = col * omega[d], r = row * omega[d];
                data[o + d] = (float)Math.Sin(c);
                data[o + quarter + d] = (float)Math.Cos(c);
                data[o + 2 * quarter + d] = (float)Math.Sin(r);
                data[o + 3 * quarter + d] = (float)Math.Cos(r);
            }
        }
        return tensor(data, new long[] { gridSize * gridSize, dim });
    }
}
