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
        using var scope = NewDisposeScope();
        var (mu1, s1) = Moments(a.to_type(ScalarType.Float64));
        var (mu2, s2) = Moments(b.to_type(ScalarType.Float64));
        // Tr((Σ₁Σ₂)^½) = Σ √λ of the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½ (same eigenvalues as Σ₁Σ₂), stabler than sqrtm.
        var (w, v) = linalg.eigh(s1);
        var s1Half = v.matmul(diag(w.clamp_min(0).sqrt())).matmul(v.T);
        var m = s1Half.matmul(s2).matmul(s1Half);
        m = (m + m.T) / 2;
        var traceSqrt = linalg.eigvalsh(m).clamp_min(0).sqrt().sum();
        var d = (mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * traceSqrt;
        return d.item<double>();
    }

    /// <summary>Mean (D) and unbiased covariance (D, D) of (N, D) samples, as numpy.cov(rowvar=False).</summary>
    private static (Tensor Mean, Tensor Cov) Moments(Tensor x)
    {
        if (x.shape[0] < 2) throw new ArgumentException("FID needs at least two samples per set");
        var mu = x.mean(new long[] { 0 });
        var centered = x - mu;
        var cov = centered.T.matmul(centered) / (x.shape[0] - 1);
        return (mu, cov);
    }
}
