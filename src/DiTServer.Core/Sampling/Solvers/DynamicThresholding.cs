using static TorchSharp.torch;

namespace DiTServer.Core.Sampling.Solvers;

/// <summary>Dynamic thresholding of x̂₀ (Saharia et al. 2022, Imagen, Section 2.3): per sample, s = the
/// <see cref="Ratio"/>-quantile of |x̂₀|, at least <see cref="MaxValue"/>; then x̂₀ = clamp(x̂₀, −s, s)/s.
/// As <c>dynamic_thresholding_fn</c> in dpm_solver_pytorch.py. Meant for pixel-space models only.</summary>
public static class DynamicThresholding
{
    public const double Ratio = 0.995;
    public const double MaxValue = 1.0;

    /// <param name="x0">(n, ...) data prediction.</param>
    public static Tensor Apply(Tensor x0)
    {
        using var scope = NewDisposeScope();
        var flat = x0.abs().reshape(x0.shape[0], -1);                                    // (n, D)
        using var q = tensor(Ratio, dtype: flat.dtype, device: flat.device);
        var s = quantile(flat, q, dim: 1);                                               // (n)
        s = maximum(s, ones_like(s) * MaxValue);
        var shape = new long[x0.dim()];
        Array.Fill(shape, 1L);
        shape[0] = x0.shape[0];
        s = s.reshape(shape);                                                            // (n, 1, …, 1)
        return (clamp(x0, -s, s) / s).MoveToOuterDisposeScope();
    }
}
