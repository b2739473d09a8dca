using DiTServer.Core.Evaluation;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The statistics of the evaluation on synthetic data with known answers: the bootstrap interval,
/// Kynkäänniemi et al.'s precision/recall, and FID through a fitted reference.</summary>
public sealed class EvaluationStatisticsTests
{
    [Fact]
    public void Bootstrap_interval_of_a_mean_covers_the_true_mean_narrows_with_more_data_and_repeats_with_its_seed()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(11);
        // Bernoulli(0.8) "correct" flags, as the accuracy of generated images.
        var small = rand(new long[] { 400 }, dtype: ScalarType.Float64, generator: g).lt(0.8).to_type(ScalarType.Float64);
        var large = rand(new long[] { 6400 }, dtype: ScalarType.Float64, generator: g).lt(0.8).to_type(ScalarType.Float64);
        Estimate Mean(Tensor x, long seed) => Bootstrap.Interval((int)x.shape[0], idx => x.index_select(0, idx).mean().item<double>(), 1000, seed);

        var a = Mean(small, 3);
        var b = Mean(large, 3);
        Assert.Equal(small.mean().item<double>(), a.Value, 12);
        Assert.InRange(0.8, a.Low, a.High);
        // (A 95% interval misses the true mean 1 time in 20; the large set's is checked by its width and by the sample mean.)
        Assert.InRange(b.Value, b.Low, b.High);
        Assert.InRange(a.Value, a.Low, a.High);
        // Width ≈ 2·1.96·√(p(1−p)/n): 0.078 at n = 400, a quarter of it at 16× the images.
        Assert.InRange(a.High - a.Low, 0.06, 0.10);
        Assert.InRange((b.High - b.Low) / (a.High - a.Low), 0.18, 0.32);
        Assert.Equal(a, Mean(small, 3));
        Assert.NotEqual(a, Mean(small, 4));
    }

    [Fact]
    public void Bootstrap_rejects_an_empty_set()
    {
        Assert.Throws<ArgumentException>(() => Bootstrap.Interval(0, _ => 0));
    }

    [Fact]
    public void Precision_and_recall_are_one_for_identical_sets_and_zero_for_disjoint_ones()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        var real = randn(new long[] { 300, 16 }, dtype: ScalarType.Float64, generator: g);
        var all = arange(300, dtype: ScalarType.Int64);

        using (var same = new ManifoldPrecisionRecall(real, real))
        {
            Assert.Equal(1.0, same.Precision(all));
            Assert.Equal(1.0, same.Recall(all));
        }
        using (var far = new ManifoldPrecisionRecall(real + 100, real))
        {
            Assert.Equal(0.0, far.Precision(all));
            Assert.Equal(0.0, far.Recall(all));
        }
        // A second sample of the same distribution: both high but below 1 (k = 3 balls miss some points).
        var other = randn(new long[] { 300, 16 }, dtype: ScalarType.Float64, generator: g);
        using (var fresh = new ManifoldPrecisionRecall(other, real))
        {
            Assert.InRange(fresh.Precision(all), 0.5, 0.999);
            Assert.InRange(fresh.Recall(all), 0.5, 0.999);
        }
        // Mode collapse: every generated point near one real point keeps precision and loses recall.
        var collapsed = real.narrow(0, 0, 1).expand(300, 16) + 0.001 * randn(new long[] { 300, 16 }, dtype: ScalarType.Float64, generator: g);
        using (var mode = new ManifoldPrecisionRecall(collapsed, real))
        {
            Assert.Equal(1.0, mode.Precision(all));
            Assert.InRange(mode.Recall(all), 0.0, 0.05);
        }
        // Half the generated points far away: precision halves.
        var half = cat([real.narrow(0, 0, 150), real.narrow(0, 150, 150) + 100], 0);
        using (var mixed = new ManifoldPrecisionRecall(half, real))
            Assert.Equal(0.5, mixed.Precision(all), 12);
    }

    [Fact]
    public void Fid_of_a_set_with_itself_is_zero_and_the_reference_agrees_with_the_direct_distance()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(9);
        var a = randn(new long[] { 40000, 12 }, dtype: ScalarType.Float64, generator: g);
        var b = randn(new long[] { 20000, 12 }, dtype: ScalarType.Float64, generator: g) * 1.5 + 0.3;
        using var reference = new FrechetReference(a);
        Assert.Equal(0, reference.DistanceTo(a), 8);
        Assert.Equal(FrechetDistance.Compute(a, b), reference.DistanceTo(b), 8);
        // Closed form for independent N(0, I) and N(0.3, 2.25 I): 12·0.09 + 12·(1 + 2.25 − 2·1.5) = 4.08, up to sampling
        // error and FID's small-sample bias (of order d²/n; hence the large sets).
        Assert.InRange(reference.DistanceTo(b), 3.85, 4.35);
    }

    [Fact]
    public void Fid_interval_is_around_the_value_and_separates_a_shifted_set()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(13);
        var real = randn(new long[] { 2000, 8 }, dtype: ScalarType.Float64, generator: g);
        var close = randn(new long[] { 500, 8 }, dtype: ScalarType.Float64, generator: g);
        var shifted = randn(new long[] { 500, 8 }, dtype: ScalarType.Float64, generator: g) + 0.5;
        using var reference = new FrechetReference(real);
        var near = Bootstrap.Interval(500, idx => reference.DistanceTo(close.index_select(0, idx)), 200, seed: 1);
        var far = Bootstrap.Interval(500, idx => reference.DistanceTo(shifted.index_select(0, idx)), 200, seed: 1);
        Assert.InRange(near.Value, near.Low, near.High);
        Assert.InRange(far.Value, far.Low, far.High);
        Assert.False(near.Overlaps(far), $"{near} vs {far}");
        Assert.True(near.Overlaps(near with { Low = near.High, High = near.High + 1 }));
    }
}
