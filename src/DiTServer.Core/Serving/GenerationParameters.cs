using DiTServer.Core.Sampling;

namespace DiTServer.Core.Serving;

/// <summary>A validated generation request: <see cref="NumImages"/> images of one class, sampled as ONE run seeded
/// with <c>Sampling.Seed</c> (so the images equal the <c>sample</c> verb's for the same labels and seed).</summary>
/// <param name="Edit">Image to image: the run starts from this image noised to its strength (and keeps its unmasked
/// pixels); null = from pure noise.</param>
public sealed record GenerationParameters(int ClassLabel, int NumImages, SamplingOptions Sampling, ImageEdit? Edit = null)
{
    public IReadOnlyList<int> Labels => Enumerable.Repeat(ClassLabel, NumImages).ToArray();

    /// <summary>Rows this request adds to every forward: one per image, two when guided by an unconditional copy
    /// (one for a guidance-conditioned model: <see cref="SamplingOptions.MaxRowsPerImage"/>).</summary>
    public int RowsPerStep => NumImages * Sampling.MaxRowsPerImage;

    /// <summary>Steps (model calls) the run really makes: all of <c>Sampling.Steps</c>, or an edit's last ceil(s·S).</summary>
    public int StepsRun => Edit?.StepsRun(Sampling.Steps) ?? Sampling.Steps;

    /// <summary>Strength of the edit, 1 without one: what the tensor-free step plan (<see cref="StepTimesteps"/>) takes.</summary>
    public double Strength => Edit?.Strength ?? 1.0;

    /// <summary>Work it asks of the device, in row-steps: what per-client queue limits count, not requests. An edit
    /// counts only the steps it runs.</summary>
    public int Cost => RowsPerStep * StepsRun;

    /// <summary>Most bytes its feature cache holds while it runs (0 without caching); <paramref name="rowBytes"/> is
    /// one row's hidden state on the model that runs it (<see cref="FeatureCache.RowBytes"/>).</summary>
    public long CacheBytes(long rowBytes) => FeatureCache.MaxBytes(RowsPerStep, rowBytes, Sampling.CacheInterval, Sampling.CacheMode);
}
