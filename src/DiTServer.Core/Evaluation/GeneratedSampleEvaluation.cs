using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>The scores of one set of generated images (one seed set, or all of them pooled), each with its 95%
/// bootstrap interval over the generated images.</summary>
/// <param name="Accuracy">Fraction of samples the classifier assigns to the class they were asked for.</param>
/// <param name="Fid">Fréchet distance (classifier features) to the whole real test set.</param>
/// <param name="Precision">Kynkäänniemi et al.'s precision (k = 3) against as many real test images as samples.</param>
/// <param name="Recall">Their recall, same real images.</param>
public sealed record SampleScores(string Name, int Images, Estimate Accuracy, Estimate Fid, Estimate Precision, Estimate Recall,
    IReadOnlyList<double> PerClassAccuracy);

/// <summary>Numbers of one evaluation: the classifier on real test images, and the scores of each seed set and of
/// all of them pooled.</summary>
/// <param name="RealTestAccuracy">Classifier accuracy on the real test set.</param>
/// <param name="RealFid">FID between as many real training images as one seed set and the test set: the floor at that size.</param>
public sealed record EvaluationResult(double RealTestAccuracy, double RealFid, int TestImages, IReadOnlyList<SampleScores> SeedSets,
    SampleScores Pooled, double GenerationSeconds);

/// <summary>Generates N samples per class with the serving pipeline and judges them with the classifier.</summary>
public static class GeneratedSampleEvaluation
{
    /// <summary>Seed sets are this far apart, so that their sampling calls (seed + chunk index) never share a seed.</summary>
    public const long SeedSetStride = 1_000_000;

    /// <summary>Samples <paramref name="perClass"/> images of every class (class-major order) with the serving pipeline.</summary>
    /// <param name="chunk">Images per sampling call (memory bound); chunk k uses options.Seed + k.</param>
    public static SampleSet Generate(LoadedModel model, int perClass, SamplingOptions options, int chunk = 100, Action<string>? log = null)
    {
        int numClasses = model.Config.NumClasses, side = model.ImageSize;
        var labels = Enumerable.Range(0, numClasses).SelectMany(c => Enumerable.Repeat(c, perClass)).ToArray();
        var pixels = new byte[labels.Length * side * side];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int k = 0, start = 0; start < labels.Length; k++, start += chunk)
        {
            var part = labels[start..Math.Min(start + chunk, labels.Length)];
            var generated = ImagePipeline.Generate(model, part, options with { Seed = options.Seed + k });
            for (int i = 0; i < generated.Count; i++)
                generated[i].Hwc.CopyTo(pixels, (start + i) * side * side); // one channel: HWC = HW
            log?.Invoke($"seed {options.Seed}: generated {Math.Min(start + chunk, labels.Length)}/{labels.Length} samples " +
                $"({clock.Elapsed.TotalSeconds:F0} s)");
        }
        return new SampleSet(options.Seed, side, pixels, labels, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Judges each seed set and their union against the real test set.</summary>
    /// <param name="train">Real training images for the FID floor (as many as one seed set).</param>
    /// <param name="bootstrapSeed">Seed of the bootstrap's resampling (the same for every set, so settings compare alike).</param>
    public static EvaluationResult Judge(ImageClassifier classifier, IdxDataset test, IdxDataset train, IReadOnlyList<SampleSet> sets,
        int numClasses, int resamples = Bootstrap.DefaultResamples, long bootstrapSeed = 0, Action<string>? log = null)
    {
        if (sets.Count == 0) throw new ArgumentException("no sample sets to judge", nameof(sets));
        using var scope = NewDisposeScope();
        var (testX, testY) = test.Slice(0, test.Count);
        var (testPred, testFeat) = ClassifierTraining.Apply(classifier, testX);
        double realAcc = testPred.eq(testY).to_type(ScalarType.Float64).mean().item<double>();
        log?.Invoke($"classifier accuracy on {test.Count} real test images: {realAcc:P2}");
        using var fidReference = new FrechetReference(testFeat);

        var (trainX, _) = train.Slice(0, Math.Min(sets[0].Count, train.Count));
        var (_, trainFeat) = ClassifierTraining.Apply(classifier, trainX);
        double realFid = fidReference.DistanceTo(trainFeat);

        var perSet = new List<SampleScores>();
        var features = new List<Tensor>();
        var corrects = new List<Tensor>();
        var labels = new List<int>();
        foreach (var set in sets)
        {
            var genX = tensor(set.Pixels, new long[] { set.Count, 1, set.Side, set.Side }, ScalarType.Byte).to_type(ScalarType.Float32) / 127.5f - 1f;
            var (pred, feat) = ClassifierTraining.Apply(classifier, genX);
            var correct = pred.eq(tensor(set.Labels.Select(l => (long)l).ToArray())).to_type(ScalarType.Float64);
            features.Add(feat);
            corrects.Add(correct);
            labels.AddRange(set.Labels);
            if (sets.Count > 1)
                perSet.Add(Score($"seed {set.Seed}", feat, correct, set.Labels, testFeat, fidReference, numClasses, resamples, bootstrapSeed));
        }
        var pooled = Score(sets.Count > 1 ? "pooled" : $"seed {sets[0].Seed}", cat(features, 0), cat(corrects, 0), labels.ToArray(), testFeat,
            fidReference, numClasses, resamples, bootstrapSeed);
        if (sets.Count == 1) perSet.Add(pooled);
        return new EvaluationResult(realAcc, realFid, test.Count, perSet, pooled, sets.Sum(s => s.GenerationSeconds));
    }

    private static SampleScores Score(string name, Tensor features, Tensor correct, int[] labels, Tensor testFeatures,
        FrechetReference fidReference, int numClasses, int resamples, long bootstrapSeed)
    {
        using var scope = NewDisposeScope();
        int n = labels.Length;
        var accuracy = Bootstrap.Interval(n, idx => correct.index_select(0, idx).mean().item<double>(), resamples, bootstrapSeed);
        var fid = Bootstrap.Interval(n, idx => fidReference.DistanceTo(features.index_select(0, idx)), resamples, bootstrapSeed);
        // Equal-sized sets, as Kynkäänniemi et al. compare them: the radii of k-NN balls shrink as a set grows.
        var real = testFeatures.narrow(0, 0, Math.Min(n, testFeatures.shape[0]));
        using var manifolds = new ManifoldPrecisionRecall(features, real);
        var precision = Bootstrap.Interval(n, manifolds.Precision, resamples, bootstrapSeed);
        var recall = Bootstrap.Interval(n, manifolds.Recall, resamples, bootstrapSeed);
        var perClass = new double[numClasses];
        for (int c = 0; c < numClasses; c++)
        {
            var rows = labels.Select((l, i) => (l, i)).Where(p => p.l == c).Select(p => (long)p.i).ToArray();
            perClass[c] = rows.Length == 0 ? double.NaN : correct.index_select(0, tensor(rows)).mean().item<double>();
        }
        return new SampleScores(name, n, accuracy, fid, precision, recall, perClass);
    }
}
