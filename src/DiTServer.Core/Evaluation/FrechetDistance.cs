using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, the "F" of FID):
/// ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).</summary>
public static class FrechetDistance
{
    /// <param name="a">(N, D) features.</param>
    /// <param name="b">(M, D) features.</param>
    public static double Compute(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        var (muA, covA) = Moments(a.to_type(float64));
        var (muB, covB) = Moments(b.to_type(float64));
        double meanTerm = (muA - muB).pow(2).sum().item<double>();
        // Tr((Σ₁Σ₂)^½) = Σ √λ of the symmetric PSD matrix Σ₁^½ Σ₂ Σ₁^½ (same eigenvalues as Σ₁Σ₂).
        var sqrtA = SqrtPsd(covA);
        var middle = sqrtA.matmul(covB).matmul(sqrtA);
        middle = (middle + middle.T) / 2;
        var eig = linalg.eigvalsh(middle).clamp(min: 0);
        double traceSqrt = eig.sqrt().sum().item<double>();
        return meanTerm + covA.trace().item<double>() + covB.trace().item<double>() - 2 * traceSqrt;
    }

    private static (Tensor Mean, Tensor Cov) Moments(Tensor x)
    {
        if (x.shape[0] < 2) throw new ArgumentException("need at least 2 samples for a covariance");
        var mean = x.mean(new long[] { 0 });
        var centered = x - mean;
        return (mean, centered.T.matmul(centered) / (x.shape[0] - 1));
    }

    private static Tensor SqrtPsd(Tensor m)
    {
        var (values, vectors) = linalg.eigh(m);
        return vectors.matmul(diag(values.clamp(min: 0).sqrt())).matmul(vectors.T);
    }
}
