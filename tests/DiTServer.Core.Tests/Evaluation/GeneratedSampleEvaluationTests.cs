using DiTServer.Core.Evaluation;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;

namespace DiTServer.Core.Tests;

/// <summary>The judge's paired difference: a setting against a reference sampled from the same seeds.</summary>
public class GeneratedSampleEvaluationTests
{
    [Fact]
    public void A_paired_difference_is_zero_against_itself_sees_a_change_and_refuses_sets_that_do_not_pair()
    {
        var folder = Directory.CreateTempSubdirectory("dit-paired-").FullName;
        try
        {
            const int side = 28, classes = 4;
            var (pixels, labelBytes) = SyntheticIdx.Write(folder, count: 256, side: side, classes: classes);
            SyntheticIdx.Write(folder, count: 200, side: side, classes: classes, seed: 2, prefix: "t10k");
            using var train = IdxDataset.FromFolder(folder);
            using var test = IdxDataset.FromFolder(folder, test: true);
            using var classifier = ClassifierTraining.Train(train, epochs: 2, batchSize: 32, seed: 1);
            int n = 80;
            var labels = labelBytes[..n].Select(b => (int)b).ToArray();
            var set = new SampleSet(0, side, pixels[..(n * side * side)], labels, 0);

            var same = GeneratedSampleEvaluation.Judge(classifier, test, train, [set], classes, resamples: 200, pairedWith: [set]).Difference!;
            foreach (var d in new[] { same.Accuracy, same.Fid, same.Precision, same.Recall })
                Assert.Equal((0.0, 0.0, 0.0), (d.Value, d.Low, d.High)); // every resample draws the same images from both

            // A reference whose first quarter of images is blank: worse accuracy, so the difference is positive and its
            // paired interval excludes 0.
            var blanked = (byte[])set.Pixels.Clone();
            Array.Clear(blanked, 0, n / 4 * side * side);
            var worse = set with { Pixels = blanked };
            var r = GeneratedSampleEvaluation.Judge(classifier, test, train, [set], classes, resamples: 200, pairedWith: [worse]);
            var accuracy = r.Difference!.Accuracy;
            Assert.True(accuracy.Value > 0.1 && accuracy.Low > 0, $"accuracy difference {accuracy}");
            Assert.Equal(r.Pooled.Accuracy.Value - GeneratedSampleEvaluation.Judge(classifier, test, train, [worse], classes, resamples: 1)
                .Pooled.Accuracy.Value, accuracy.Value, 12);

            var otherClasses = set with { Labels = labels.Reverse().ToArray() };
            Assert.Throws<ArgumentException>(() => GeneratedSampleEvaluation.Judge(classifier, test, train, [set], classes, pairedWith: [otherClasses]));
        }
        finally { Directory.Delete(folder, true); }
    }
}
