using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>Numbers of one evaluation: classifier accuracy on real test images and on generated samples, and FID.</summary>
/// <param name="RealTestAccuracy">Classifier accuracy on the real test set.</param>
/// <param name="GeneratedAccuracy">Fraction of generated samples classified as the class they were asked for.</param>
/// <param name="PerClassAccuracy">Same, per requested class.</param>
/// <param name="Fid">FID (classifier features) between the generated samples and the test set.</param>
/// <param name="RealFid">FID between as many real training images and the test set: the floor at this sample size.</param>
public sealed record EvaluationResult(
    double RealTestAccuracy, double GeneratedAccuracy, IReadOnlyList<double> PerClassAccuracy,
    double Fid, double RealFid, int SamplesPerClass, int TestImages, double GenerationSeconds)
{
    public double Ratio => GeneratedAccuracy / RealTestAccuracy;
}

/// <summary>Generates N samples per class with the serving pipeline and judges them with the classifier.</summary>
public static class GeneratedSampleEvaluation
{
    /// <param name="chunk">Images per sampling call (memory bound); chunk k uses seed options.Seed + k.</param>
    /// <param name="keepForGrid">How many samples of each class to return (HWC bytes) for a picture.</param>
    public static (EvaluationResult Result, IReadOnlyList<byte[]> GridImages) Run(
        LoadedModel model, ImageClassifier classifier, IdxDataset test, IdxDataset train, int perClass, SamplingOptions options,
        int chunk = 100, int keepForGrid = 0, Action<string>? log = null)
    {
        using var scope = NewDisposeScope();
        int numClasses = model.Config.NumClasses;
        var (testX, testY) = test.Slice(0, test.Count);
        var (testPred, testFeat) = ClassifierTraining.Apply(classifier, testX);
        double realAcc = testPred.eq(testY).to_type(ScalarType.Float64).mean().item<double>();
        log?.Invoke($"classifier accuracy on {test.Count} real test images: {realAcc:P2}");

        var labels = Enumerable.Range(0, numClasses).SelectMany(c => Enumerable.Repeat(c, perClass)).ToArray();
        var images = new List<Tensor>();
        var grid = new List<byte[]>[numClasses];
        for (int c = 0; c < numClasses; c++) grid[c] = [];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int k = 0, start = 0; start < labels.Length; k++, start += chunk)
        {
            var part = labels[start..Math.Min(start + chunk, labels.Length)];
            var generated = ImagePipeline.Generate(model, part, options with { Seed = options.Seed + k });
            foreach (var g in generated)
            {
                // Judge what the server would return: the 8-bit PNG pixels, mapped back to [−1, 1].
                images.Add(tensor(g.Hwc, new long[] { g.Height, g.Width, g.Channels }, ScalarType.Byte).permute(2, 0, 1));
                if (grid[g.ClassLabel].Count < keepForGrid) grid[g.ClassLabel].Add(g.Hwc);
            }
            log?.Invoke($"generated {Math.Min(start + chunk, labels.Length)}/{labels.Length} samples ({clock.Elapsed.TotalSeconds:F0} s)");
        }
        double genSeconds = clock.Elapsed.TotalSeconds;
        var genX = stack(images).to_type(ScalarType.Float32) / 127.5f - 1f;
        var genY = tensor(labels.Select(l => (long)l).ToArray());
        var (genPred, genFeat) = ClassifierTraining.Apply(classifier, genX);
        var correct = genPred.eq(genY).to_type(ScalarType.Float64);
        double genAcc = correct.mean().item<double>();
        var perClassAcc = Enumerable.Range(0, numClasses)
            .Select(c => correct.narrow(0, (long)c * perClass, perClass).mean().item<double>()).ToArray();

        double fid = FrechetDistance.Compute(genFeat, testFeat);
        var (trainX, _) = train.Slice(0, Math.Min(labels.Length, train.Count));
        var (_, trainFeat) = ClassifierTraining.Apply(classifier, trainX);
        double realFid = FrechetDistance.Compute(trainFeat, testFeat);
        var result = new EvaluationResult(realAcc, genAcc, perClassAcc, fid, realFid, perClass, test.Count, genSeconds);
        return (result, grid.SelectMany(g => g).ToList());
    }
}
