using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>One side of the Fréchet distance fitted once (the real test set), so that the distances of many
/// feature sets to it (bootstrap resamples) cost one covariance and one eigendecomposition each.</summary>
public sealed class FrechetReference : IDisposable
{
    private readonly Tensor mean, cov, covHalf;

    /// <param name="features">(N, D) features of the reference set.</param>
    public FrechetReference(Tensor features)
    {
        using var scope = NewDisposeScope();
        var (mu, s) = FrechetDistance.Moments(features.to_type(ScalarType.Float64));
        // Tr((Σ₁Σ₂)^½) = Σ √λ of the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½ (same eigenvalues as Σ₁Σ₂), stabler than sqrtm.
        var (w, v) = linalg.eigh(s);
        covHalf = v.matmul(diag(w.clamp_min(0).sqrt())).matmul(v.T).MoveToOuterDisposeScope();
        mean = mu.MoveToOuterDisposeScope();
        cov = s.MoveToOuterDisposeScope();
    }

    /// <param name="features">(M, D) features.</param>
    public double DistanceTo(Tensor features)
    {
        using var scope = NewDisposeScope();
        var (mu2, s2) = FrechetDistance.Moments(features.to_type(ScalarType.Float64));
        var m = covHalf.matmul(s2).matmul(covHalf);
        m = (m + m.T) / 2;
        var traceSqrt = linalg.eigvalsh(m).clamp_min(0).sqrt().sum();
        var d = (mean - mu2).pow(2).sum() + cov.trace() + s2.trace() - 2 * traceSqrt;
        return d.item<double>();
    }

    public void Dispose()
    {
        mean.Dispose();
        cov.Dispose();
        covHalf.Dispose();
    }
}
