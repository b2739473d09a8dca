using DiTServer.Core.Sampling;

namespace DiTServer.Core.Serving;

/// <summary>A validated generation request: <see cref="NumImages"/> images of one class, sampled as ONE run seeded
/// with <c>Sampling.Seed</c> (so the images equal the <c>sample</c> verb's for the same labels and seed).</summary>
public sealed record GenerationParameters(int ClassLabel, int NumImages, SamplingOptions Sampling)
{
    public IReadOnlyList<int> Labels => Enumerable.Repeat(ClassLabel, NumImages).ToArray();

    /// <summary>Rows this request adds to every forward: one per image, two when guided (the unconditional copy).</summary>
    public int RowsPerStep => NumImages * (Sampling.CfgScale != 1.0 ? 2 : 1);

    /// <summary>Work it asks of the device, in row-steps: what per-client queue limits count, not requests.</summary>
    public int Cost => RowsPerStep * Sampling.Steps;

    /// <summary>Most bytes its feature cache holds while it runs (0 without caching); <paramref name="rowBytes"/> is
    /// one row's hidden state on the model that runs it (<see cref="FeatureCache.RowBytes"/>).</summary>
    public long CacheBytes(long rowBytes) => FeatureCache.MaxBytes(RowsPerStep, rowBytes, Sampling.CacheInterval, Sampling.CacheMode);
}
