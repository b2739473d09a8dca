using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
/// Generative Models", Sec. 2): each set's manifold is the union of balls around its features whose radius is the
/// distance to the k-th nearest neighbour in the same set; precision is the fraction of generated samples inside the
/// real manifold, recall the fraction of real samples inside the generated one.</summary>
/// <remarks>Built once per pair of sets; <see cref="Precision"/> and <see cref="Recall"/> then take a subset (or a
/// bootstrap resample) of the generated samples with the radii of the full sets, so a duplicated sample in a resample
/// does not shrink a ball to zero.</remarks>
public sealed class ManifoldPrecisionRecall : IDisposable
{
    public const int DefaultK = 3;

    private readonly Tensor insideReal;  // (G) bool: generated sample i lies in some real ball
    private readonly Tensor coveredBy;   // (R, G) bool: real sample j lies in generated sample i's ball

    public int GeneratedCount { get; }

    /// <param name="generated">(G, D) features of generated samples.</param>
    /// <param name="real">(R, D) features of real samples.</param>
    public ManifoldPrecisionRecall(Tensor generated, Tensor real, int k = DefaultK)
    {
        if (k < 1) throw new ArgumentOutOfRangeException(nameof(k), "k must be at least 1");
        if (generated.shape[0] <= k || real.shape[0] <= k)
            throw new ArgumentException($"precision/recall with k = {k} needs more than {k} samples in each set");
        GeneratedCount = (int)generated.shape[0];
        using var scope = NewDisposeScope();
        var g = generated.to_type(ScalarType.Float64);
        var r = real.to_type(ScalarType.Float64);
        var realRadius = KthNeighbourDistance(r, k);                      // (R)
        var genRadius = KthNeighbourDistance(g, k);                       // (G)
        var dist = cdist(g, r);                                           // (G, R)
        insideReal = dist.le(realRadius.unsqueeze(0)).any(1).MoveToOuterDisposeScope();    // (G)
        coveredBy = dist.T.le(genRadius.unsqueeze(0)).MoveToOuterDisposeScope();           // (R, G)
    }

    /// <summary>Fraction of the generated samples at <paramref name="indices"/> that fall in the real manifold.</summary>
    public double Precision(Tensor indices)
    {
        using var scope = NewDisposeScope();
        return insideReal.index_select(0, indices).to_type(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>Fraction of real samples inside the balls of the generated samples at <paramref name="indices"/>.</summary>
    public double Recall(Tensor indices)
    {
        using var scope = NewDisposeScope();
        return coveredBy.index_select(1, indices).any(1).to_type(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>Distance from each row to its k-th nearest other row (the row itself, at distance 0, is skipped).</summary>
    private static Tensor KthNeighbourDistance(Tensor x, int k)
    {
        var d = cdist(x, x);                                              // (N, N)
        return d.topk(k + 1, dim: 1, largest: false).values.select(1, k); // (N)
    }

    public void Dispose()
    {
        insideReal.Dispose();
        coveredBy.Dispose();
    }
}
