using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>Fréchet distance between Gaussian fits of two feature sets (Heusel et al. 2017, "GANs Trained by a Two
/// Time-Scale Update Rule…", Eq. 6): ‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).</summary>
public static class FrechetDistance
{
    /// <param name="a">(N, D) features.</param>
    /// <param name="b">(M, D) features.</param>
    public static double Compute(Tensor a, Tensor b)
    {
        using var reference = new FrechetReference(a);
        return reference.DistanceTo(b);
    }

    /// <summary>Mean (D) and unbiased covariance (D, D) of (N, D) samples, as numpy.cov(rowvar=False).</summary>
    internal static (Tensor Mean, Tensor Cov) Moments(Tensor x)
    {
        if (x.shape[0] < 2) throw new ArgumentException("FID needs at least two samples per set");
        var mu = x.mean(new long[] { 0 });
        var centered = x - mu;
        var cov = centered.T.matmul(centered) / (x.shape[0] - 1);
        return (mu, cov);
    }
}
