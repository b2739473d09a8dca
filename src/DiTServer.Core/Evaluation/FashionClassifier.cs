using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace DiTServer.Core.Evaluation;

/// <summary>A small CNN that judges generated images: two conv/pool stages, a 128-d feature layer, a class head.</summary>
/// <remarks>The 128-d penultimate features serve as the embedding for a Fréchet distance, in the role
/// Inception-v3's pool features play in FID for ImageNet.</remarks>
public sealed class FashionClassifier : Module<Tensor, Tensor>
{
    public const int FeatureSize = 128;

    private readonly Sequential features;
    private readonly Linear head;

    public int ImageSize { get; }
    public int Channels { get; }
    public int NumClasses { get; }

    public FashionClassifier(int imageSize = 28, int channels = 1, int numClasses = 10) : base(nameof(FashionClassifier))
    {
        if (imageSize % 4 != 0) throw new ArgumentException($"image size {imageSize} must be divisible by 4");
        ImageSize = imageSize;
        Channels = channels;
        NumClasses = numClasses;
        int flat = 64 * (imageSize / 4) * (imageSize / 4);
        features = Sequential(
            Conv2d(channels, 32, 3, padding: 1), ReLU(), MaxPool2d(2),   // (N, 32, S/2, S/2)
            Conv2d(32, 64, 3, padding: 1), ReLU(), MaxPool2d(2),         // (N, 64, S/4, S/4)
            Flatten(),                                                   // (N, 64·S²/16)
            Linear(flat, FeatureSize), ReLU());                          // (N, 128)
        head = Linear(FeatureSize, numClasses);
        RegisterComponents();
    }

    /// <summary>Images in [-1, 1] (N, C, S, S) → logits (N, classes).</summary>
    public override Tensor forward(Tensor x) => head.forward(features.forward(x));

    /// <summary>Images in [-1, 1] → the 128-d penultimate features (N, 128).</summary>
    public Tensor Features(Tensor x) => features.forward(x);
}
