using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>Labelled images the trainer draws batches from, already in the model's input space.</summary>
public interface ITrainingDataset : IDisposable
{
    int Count { get; }
    int ImageSize { get; }
    int Channels { get; }
    int NumClasses { get; }
    /// <summary>Whether the trainer flips each image left-right with probability ½ (train.py's RandomHorizontalFlip).</summary>
    bool HorizontalFlip => false;

    /// <summary>Images (B, C, S, S) float32 in the model's input range and labels (B,) int64 for the given indices.</summary>
    (Tensor Images, Tensor Labels) Batch(Tensor indices);
}
