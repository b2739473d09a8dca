using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>A dataset in the VAE's latent space: the posterior mean and std of every image, encoded once
/// (<see cref="LatentCache"/>), from which each step draws <c>(mean + std·ε) · scaling_factor</c> as train.py's
/// <c>vae.encode(x).latent_dist.sample().mul_(0.18215)</c> does, with ε from the trainer's generator.</summary>
/// <remarks>When the image dataset flips randomly, both orientations were encoded (a flipped latent is not the
/// latent of the flipped image: the encoder's convolutions are not mirror-symmetric), and each sample picks one
/// with probability ½ from the same generator.</remarks>
public sealed class LatentDataset : ITrainingDataset
{
    private readonly Tensor mean, std;                 // (N, C, h, w) float32, unscaled posterior
    private readonly Tensor? flippedMean, flippedStd;  // of the mirrored images, or null without flips
    private readonly Tensor labels;                    // (N,) int64

    public LatentDataset(Tensor mean, Tensor std, Tensor? flippedMean, Tensor? flippedStd, Tensor labels, int numClasses, double scalingFactor)
    {
        if (!mean.shape.SequenceEqual(std.shape) || mean.dim() != 4 || labels.shape[0] != mean.shape[0])
            throw new ArgumentException("latent mean, std and labels must be (N, C, h, w), (N, C, h, w) and (N,)");
        if ((flippedMean is null) != (flippedStd is null)
            || (flippedMean is not null && (!flippedMean.shape.SequenceEqual(mean.shape) || !flippedStd!.shape.SequenceEqual(mean.shape))))
            throw new ArgumentException("the flipped latents must come as mean and std of the same shape as the unflipped ones");
        this.mean = mean;
        this.std = std;
        this.flippedMean = flippedMean;
        this.flippedStd = flippedStd;
        this.labels = labels;
        NumClasses = numClasses;
        ScalingFactor = scalingFactor;
    }

    public int Count => (int)mean.shape[0];
    public int ImageSize => (int)mean.shape[2];
    public int Channels => (int)mean.shape[1];
    public int NumClasses { get; }
    public double ScalingFactor { get; }
    /// <summary>True when both orientations were encoded and <see cref="Draw"/> picks one per sample.</summary>
    public bool HorizontalFlip => flippedMean is not null;

    /// <summary>The unscaled posterior means and stds (what the VAE encoder gave), for inspection and tests.</summary>
    public (Tensor Mean, Tensor Std, Tensor? FlippedMean, Tensor? FlippedStd) Posterior => (mean, std, flippedMean, flippedStd);

    /// <summary>Scaled posterior means (no randomness) with their labels.</summary>
    public (Tensor Images, Tensor Labels) Batch(Tensor indices) =>
        (mean.index_select(0, indices) * ScalingFactor, labels.index_select(0, indices));

    /// <summary>One posterior sample per index, scaled; draws (flip choice, then ε) from <paramref name="generator"/>.</summary>
    public (Tensor Images, Tensor Labels) Draw(Tensor indices, Generator generator)
    {
        var m = mean.index_select(0, indices);
        var s = std.index_select(0, indices);
        if (flippedMean is not null)
        {
            var flip = rand(new long[] { indices.shape[0], 1, 1, 1 }, generator: generator) < 0.5;
            m = where(flip, flippedMean.index_select(0, indices), m);
            s = where(flip, flippedStd!.index_select(0, indices), s);
        }
        var eps = randn(m.shape, generator: generator);
        return ((m + s * eps) * ScalingFactor, labels.index_select(0, indices));
    }

    public void Dispose()
    {
        mean.Dispose();
        std.Dispose();
        flippedMean?.Dispose();
        flippedStd?.Dispose();
        labels.Dispose();
    }
}
