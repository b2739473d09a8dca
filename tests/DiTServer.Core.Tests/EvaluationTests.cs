using DiTServer.Core.Evaluation;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The evaluation pieces: Fréchet distance, the classifier, and turning PNG pixels into classifier input.</summary>
public class EvaluationTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("dit-eval-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    [Fact]
    public void Frechet_distance_is_zero_for_one_set_and_grows_with_a_mean_shift()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3);
        var a = randn(new long[] { 4000, 8 }, generator: g, dtype: float64);
        var b = randn(new long[] { 4000, 8 }, generator: g, dtype: float64);
        Assert.InRange(FrechetDistance.Compute(a, a), -1e-6, 1e-6);
        double sameDistribution = FrechetDistance.Compute(a, b);
        Assert.InRange(sameDistribution, 0, 0.1);
        // Shifting every coordinate by 1 leaves Σ and adds ‖Δμ‖² = 8.
        Assert.InRange(FrechetDistance.Compute(a, a + 1.0), 8 - 1e-6, 8 + 1e-6);
        // Scaling by 2: ‖μ‖² + Tr(Σ + 4Σ − 2·2Σ) = ‖μ‖² + Tr(Σ).
        var centered = a - a.mean(new long[] { 0 });
        double trace = (centered.pow(2).sum() / (a.shape[0] - 1)).item<double>();
        double meanNorm = a.mean(new long[] { 0 }).pow(2).sum().item<double>();
        Assert.InRange(FrechetDistance.Compute(a, a * 2.0), meanNorm + trace - 1e-6, meanNorm + trace + 1e-6);
    }

    [Fact]
    public void Classifier_learns_the_synthetic_classes_and_round_trips_through_its_folder()
    {
        SyntheticIdx.Write(dir, count: 256, side: 8, classes: 4);
        using var data = IdxDataset.FromFolder(dir);
        using var net = ClassifierTraining.Train(data, epochs: 8, batchSize: 32, lr: 3e-3, seed: 1);
        var (images, labels) = ClassifierTraining.All(data);
        using var owned = images;
        var (pred, features) = ClassifierTraining.Classify(net, images);
        using var f = features;
        Assert.Equal(new long[] { 256, FashionClassifier.FeatureSize }, features.shape);
        double accuracy = pred.Zip(labels, (p, l) => p == l ? 1.0 : 0.0).Average();
        Assert.True(accuracy > 0.9, $"accuracy {accuracy:P1}");

        ClassifierFile.Save(Path.Combine(dir, "clf"), net, accuracy);
        using var back = ClassifierFile.Load(Path.Combine(dir, "clf"));
        var (pred2, f2) = ClassifierTraining.Classify(back, images);
        f2.Dispose();
        Assert.Equal(pred, pred2);
    }

    [Fact]
    public void Pixels_map_to_the_dataset_range_and_larger_images_are_center_cropped()
    {
        using var scope = NewDisposeScope();
        var pixels = zeros(new long[] { 1, 1, 32, 32 }, dtype: ScalarType.Byte);
        pixels[.., .., 2..30, 2..30] = tensor((byte)255);
        var x = SampleEvaluation.ToClassifierInput(pixels, 28);
        Assert.Equal(new long[] { 1, 1, 28, 28 }, x.shape);
        Assert.Equal(1f, x.min().item<float>()); // the crop keeps exactly the bright 28×28 centre
        Assert.Throws<ArgumentException>(() => SampleEvaluation.ToClassifierInput(pixels, 36));
    }

    [Fact]
    public void Missing_classifier_folder_is_a_clear_error()
    {
        var e = Assert.Throws<FileNotFoundException>(() => ClassifierFile.Load(Path.Combine(dir, "none")));
        Assert.Contains("classifier.json", e.Message);
    }
}
