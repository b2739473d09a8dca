using DiTServer.Core.Sampling;

namespace DiTServer.Core.Serving;

/// <summary>A validated generation request: <see cref="NumImages"/> images of one class, sampled as ONE run seeded
/// with <c>Sampling.Seed</c> (so the images equal the <c>sample</c> verb's for the same labels and seed).</summary>
public sealed record GenerationParameters(int ClassLabel, int NumImages, SamplingOptions Sampling)
{
    public IReadOnlyList<int> Labels => Enumerable.Repeat(ClassLabel, NumImages).ToArray();

    /// <summary>Rows this request adds to every forward: one per image, two when guided by an unconditional copy
    /// (one for a guidance-conditioned model: <see cref="SamplingOptions.MaxRowsPerImage"/>).</summary>
    public int RowsPerStep => NumImages * Sampling.MaxRowsPerImage;

    /// <summary>Work it asks of the device, in row-steps: what per-client queue limits count, not requests.</summary>
    public int Cost => RowsPerStep * Sampling.Steps;
}
