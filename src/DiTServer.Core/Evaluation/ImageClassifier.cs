using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace DiTServer.Core.Evaluation;

/// <summary>A small CNN for 28×28 grayscale images in [−1, 1] (two conv–pool stages, a 128-unit feature layer);
/// the judge of generated samples and the feature extractor for FID.</summary>
public sealed class ImageClassifier : Module<Tensor, Tensor>
{
    public const int ImageSize = 28, FeatureSize = 128;

    private readonly Sequential features;
    private readonly Linear head;

    public int NumClasses { get; }

    public ImageClassifier(int numClasses = 10) : base(nameof(ImageClassifier))
    {
        NumClasses = numClasses;
        features = Sequential(
            Conv2d(1, 32, 3, padding: 1), ReLU(), MaxPool2d(2),    // (N, 32, 14, 14)
            Conv2d(32, 64, 3, padding: 1), ReLU(), MaxPool2d(2),   // (N, 64, 7, 7)
            Flatten(),                                            // (N, 3136)
            Linear(64 * 7 * 7, FeatureSize), ReLU());             // (N, 128)
        head = Linear(FeatureSize, numClasses);
        RegisterComponents();
    }

    /// <summary>Penultimate features (N, 128): the embedding FID is computed on.</summary>
    public Tensor Features(Tensor x) => features.forward(CenterCrop(x));

    /// <summary>Class logits (N, classes).</summary>
    public override Tensor forward(Tensor x) => head.forward(Features(x));

    /// <summary>Padded inputs (e.g. 32×32) are cropped back to the 28×28 the classifier was trained on.</summary>
    private static Tensor CenterCrop(Tensor x)
    {
        long side = x.shape[^1];
        if (side == ImageSize) return x;
        if (side < ImageSize) throw new ArgumentException($"images are {side}×{side}; the classifier needs at least {ImageSize}×{ImageSize}");
        long o = (side - ImageSize) / 2;
        return x.narrow(2, o, ImageSize).narrow(3, o, ImageSize);
    }
}
