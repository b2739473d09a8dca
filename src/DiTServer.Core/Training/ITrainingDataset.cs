using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>Labelled images the trainer draws batches from, already in the model's input space.</summary>
public interface ITrainingDataset : IDisposable
{
    int Count { get; }
    /// <summary>Side of the model input: the image side in pixel space, the latent side in latent space.</summary>
    int ImageSize { get; }
    /// <summary>Channels of the model input: image channels in pixel space, latent channels in latent space.</summary>
    int Channels { get; }
    int NumClasses { get; }
    /// <summary>Whether the trainer flips each image left-right with probability ½ (train.py's RandomHorizontalFlip).</summary>
    bool HorizontalFlip => false;

    /// <summary>Images (B, C, S, S) float32 in the model's input range and labels (B,) int64 for the given indices.</summary>
    (Tensor Images, Tensor Labels) Batch(Tensor indices);

    /// <summary>The training batch for the given indices with its per-sample randomness (flip; for latents, the
    /// posterior draw) taken from <paramref name="generator"/>, the trainer's own, so a resumed run draws the same.</summary>
    /// <remarks>The default is the pixel-space recipe: <see cref="Batch"/>, then a flip with probability ½ when
    /// <see cref="HorizontalFlip"/> (one uniform draw per sample, after the indices: the order checkpoints rely on).</remarks>
    (Tensor Images, Tensor Labels) Draw(Tensor indices, Generator generator)
    {
        var (x, y) = Batch(indices);
        if (HorizontalFlip)
        {
            var flip = rand(new long[] { indices.shape[0], 1, 1, 1 }, generator: generator) < 0.5;
            x = where(flip, x.flip(3), x);
        }
        return (x, y);
    }
}
