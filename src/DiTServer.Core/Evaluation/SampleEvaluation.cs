using DiTServer.Core.Checkpoints;
using DiTServer.Core.Imaging;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>What the evaluation measured: accuracies of the classifier on real and generated images, and FIDs.</summary>
public sealed record EvaluationReport(
    double RealTestAccuracy, double GeneratedAccuracy, IReadOnlyList<double> GeneratedAccuracyPerClass,
    double FidGeneratedVsTest, double FidTrainVsTest, int ImagesPerClass, SamplingOptions Options, TimeSpan GenerationTime)
{
    /// <summary>Generated-sample accuracy relative to real-test accuracy (goal ≥ 0.9).</summary>
    public double AccuracyRatio => GeneratedAccuracy / RealTestAccuracy;
}

/// <summary>Scores a class-conditional model: N samples per class, classified by the project's CNN, plus a
/// Fréchet distance on the CNN's features against the real test set (and a train-vs-test reference).</summary>
public static class SampleEvaluation
{
    public static EvaluationReport Run(LoadedModel model, FashionClassifier classifier, ITrainingDataset test, ITrainingDataset train,
        int perClass, SamplingOptions options, int chunk = 100, Action<string>? log = null)
    {
        int classes = Math.Min(model.Config.NumClasses, classifier.NumClasses);
        var (testImages, testLabels) = ClassifierTraining.All(test);
        using var testImagesOwned = testImages;
        var (testPred, testFeatures) = ClassifierTraining.Classify(classifier, testImages);
        using var testFeaturesOwned = testFeatures;
        double realAccuracy = testPred.Zip(testLabels, (p, l) => p == l ? 1.0 : 0.0).Average();
        log?.Invoke($"classifier accuracy on the real test set: {realAccuracy:P2}");

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var perClassAccuracy = new double[classes];
        var generatedFeatures = new List<Tensor>();
        try
        {
            for (int c = 0; c < classes; c++)
            {
                int correct = 0;
                for (int done = 0; done < perClass; done += chunk)
                {
                    int n = Math.Min(chunk, perClass - done);
                    using var scope = NewDisposeScope();
                    var latents = LatentSampler.Sample(model.Model, Enumerable.Repeat((long)c, n).ToArray(),
                        options with { Seed = options.Seed + c * 100_003L + done }, model.Device);
                    var images = ToClassifierInput(ImageDecoder.DecodeToPixels(model, latents), classifier.ImageSize);
                    var (pred, features) = ClassifierTraining.Classify(classifier, images);
                    correct += pred.Count(p => p == c);
                    generatedFeatures.Add(features.MoveToOuterDisposeScope());
                }
                perClassAccuracy[c] = correct / (double)perClass;
                log?.Invoke($"class {c} ({model.Classes[c]}): {perClassAccuracy[c]:P1} of {perClass} classified as asked ({clock.Elapsed.TotalSeconds:F0} s)");
            }
            using var generated = cat(generatedFeatures, 0);
            double fidGenerated = FrechetDistance.Compute(generated, testFeatures);

            // Reference: the same number of real training images against the test set.
            using var refScope = NewDisposeScope();
            var refIdx = arange(Math.Min(train.Count, classes * perClass), dtype: int64);
            var (trainImages, _) = train.Batch(refIdx);
            var (_, trainFeatures) = ClassifierTraining.Classify(classifier, trainImages);
            double fidTrain = FrechetDistance.Compute(trainFeatures, testFeatures);

            return new EvaluationReport(realAccuracy, perClassAccuracy.Average(), perClassAccuracy, fidGenerated, fidTrain, perClass, options, clock.Elapsed);
        }
        finally
        {
            foreach (var f in generatedFeatures) f.Dispose();
        }
    }

    /// <summary>uint8 pixels → [-1, 1] floats as the dataset gives them, center-cropped to the classifier's size.</summary>
    public static Tensor ToClassifierInput(Tensor pixels, int size)
    {
        var x = pixels.to_type(float32) / 127.5f - 1f;
        long h = x.shape[2], w = x.shape[3];
        if (h == size && w == size) return x;
        if (h < size || w < size) throw new ArgumentException($"generated images are {h}×{w}, smaller than the classifier's {size}×{size}");
        long top = (h - size) / 2, left = (w - size) / 2;
        return x[.., .., (int)top..(int)(top + size), (int)left..(int)(left + size)];
    }
}
