using DiTServer.Core.Imaging;
using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>What image to image does at one strength, judged by the classifier on real test images edited three ways:
/// toward their own class, toward another class, and toward another class with the right half masked for redrawing.</summary>
/// <param name="StepsRun">Model calls per edit: ceil(strength · steps).</param>
/// <param name="ClassKept">Edits toward the image's own class that the classifier still assigns to it.</param>
/// <param name="MovedToTarget">Edits toward <see cref="ImageEditEvaluation.TargetOf"/> the image's class that it assigns to the target.</param>
/// <param name="MaskedToTarget">The same for the masked edits (only the right half may change).</param>
/// <param name="KeptPixelMaxError">Largest |output − input| over the kept (left-half) pixels of every masked edit, in 8-bit levels.</param>
/// <param name="MeanChange">Mean |output − input| of the edits toward the own class, in 8-bit levels.</param>
public sealed record EditScores(double Strength, int Images, int StepsRun, Estimate ClassKept, Estimate MovedToTarget, Estimate MaskedToTarget,
    int KeptPixelMaxError, double MeanChange);

/// <summary>Edits real test images with the server's runner (edit runs batched together, as the server batches them)
/// and judges the results with the evaluation CNN: how often a low strength keeps the class, how often a high one
/// reaches the class asked for, and the kept-pixel error under a mask.</summary>
public static class ImageEditEvaluation
{
    /// <summary>The class an image is edited toward: the next one (T-shirt → trouser, …, ankle boot → T-shirt).</summary>
    public static int TargetOf(int label, int numClasses) => (label + 1) % numClasses;

    /// <summary>The mask of the masked edits: the right half is redrawn, the left half kept.</summary>
    public static byte[] RightHalf(int side) => Enumerable.Range(0, side * side).Select(i => i % side >= side / 2 ? (byte)255 : (byte)0).ToArray();

    /// <param name="perClass">Test images per class: the first ones of each class in the test set.</param>
    /// <param name="options">Sampling of every edit; edit k of a task uses seed options.Seed + k.</param>
    /// <param name="runsPerBatch">Edit runs stepped together in one forward.</param>
    public static IReadOnlyList<EditScores> Run(LoadedModel model, ImageClassifier judge, IdxDataset test, int perClass, SamplingOptions options,
        IReadOnlyList<double> strengths, int runsPerBatch = 50, int resamples = Bootstrap.DefaultResamples, Action<string>? log = null)
    {
        int side = model.ImageSize, classes = model.Config.NumClasses;
        if (model.ImageChannels != 1 || side != test.ImageSize) throw new ArgumentException($"{model.Name} does not make {test.ImageSize}² grayscale images");
        var (images, labels) = Sources(test, perClass, classes);
        var mask = RightHalf(side);
        var scores = new List<EditScores>();
        foreach (double s in strengths)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var own = Edit(model, images, labels, options, s, null, runsPerBatch);
            var targets = labels.Select(l => TargetOf(l, classes)).ToArray();
            var moved = Edit(model, images, targets, options, s, null, runsPerBatch);
            var masked = Edit(model, images, targets, options, s, mask, runsPerBatch);
            int keptError = 0;
            for (int i = 0; i < images.Count; i++)
                for (int p = 0; p < mask.Length; p++)
                    if (mask[p] == 0) keptError = Math.Max(keptError, Math.Abs(masked[i][p] - images[i][p]));
            double change = own.Select((o, i) => o.Zip(images[i], (a, b) => Math.Abs(a - b)).Average()).Average();
            var score = new EditScores(s, images.Count, ImageEdit.StepsRun(options.Steps, s), Agreement(judge, own, labels, side, resamples),
                Agreement(judge, moved, targets, side, resamples), Agreement(judge, masked, targets, side, resamples), keptError, change);
            scores.Add(score);
            log?.Invoke($"strength {s}: {3 * images.Count} edits of {score.StepsRun} steps in {clock.Elapsed.TotalSeconds:F0} s");
        }
        return scores;
    }

    /// <summary>The first <paramref name="perClass"/> test images of each class, as 8-bit pixels, class-major.</summary>
    private static (List<byte[]> Images, int[] Labels) Sources(IdxDataset test, int perClass, int classes)
    {
        using var scope = NewDisposeScope();
        var (x, y) = test.Slice(0, test.Count);
        var all = y.data<long>().ToArray();
        var pixels = Pixels.ToUInt8(x);
        var images = new List<byte[]>();
        var labels = new List<int>();
        for (int c = 0; c < classes; c++)
        {
            var rows = Enumerable.Range(0, all.Length).Where(i => all[i] == c).Take(perClass).ToList();
            if (rows.Count < perClass) throw new ArgumentException($"the test set has {rows.Count} images of class {c}, fewer than {perClass}");
            foreach (int i in rows)
            {
                images.Add(Pixels.ToHwcBytes(pixels[i]));
                labels.Add(c);
            }
        }
        return (images, labels.ToArray());
    }

    /// <summary>Edits every image toward its label, <paramref name="runsPerBatch"/> runs per forward.</summary>
    private static List<byte[]> Edit(LoadedModel model, List<byte[]> images, int[] labels, SamplingOptions options, double strength, byte[]? mask,
        int runsPerBatch)
    {
        var runner = new ModelRunner(model);
        var results = new List<byte[]>(images.Count);
        for (int from = 0; from < images.Count; from += runsPerBatch)
        {
            var runs = new List<SamplingRun>();
            try
            {
                for (int i = from; i < Math.Min(from + runsPerBatch, images.Count); i++)
                    runs.Add(runner.Start(new GenerationParameters(labels[i], 1, options with { Seed = options.Seed + i },
                        new ImageEdit(images[i], model.ImageSize, 1, strength, mask))));
                while (runs.Any(r => !r.Done))
                    if (runner.Step(runs.Where(r => !r.Done).ToList()) is [var (_, error), ..]) throw error;
                results.AddRange(runner.Decode(runs).Select(r => r[0]));
            }
            finally
            {
                foreach (var run in runs) run.Dispose();
            }
        }
        return results;
    }

    /// <summary>Fraction of <paramref name="images"/> the classifier assigns to <paramref name="expected"/>, with its bootstrap interval.</summary>
    private static Estimate Agreement(ImageClassifier judge, List<byte[]> images, int[] expected, int side, int resamples)
    {
        using var scope = NewDisposeScope();
        var x = tensor(images.SelectMany(i => i).ToArray(), new long[] { images.Count, 1, side, side }, ScalarType.Byte).to_type(ScalarType.Float32)
            / 127.5f - 1f;
        var (pred, _) = ClassifierTraining.Apply(judge, x);
        var correct = pred.eq(tensor(expected.Select(l => (long)l).ToArray())).to_type(ScalarType.Float64);
        return Bootstrap.Interval(images.Count, idx => correct.index_select(0, idx).mean().item<double>(), resamples);
    }
}
