using DiTServer.Core.Evaluation;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The evaluation pieces: FID against closed forms, the classifier's shapes and learning.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class EvaluationTests
{
    [Fact]
    public void Frechet_distance_matches_closed_forms()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var a = randn(new long[] { 4000, 8 }, dtype: ScalarType.Float64, generator: g);
        Assert.Equal(0, FrechetDistance.Compute(a, a), 6);
        // A shift by 1 in every dimension adds ‖μ₁−μ₂‖² = 8 and nothing else.
        Assert.Equal(8, FrechetDistance.Compute(a, a + 1), 6);
        // Scaling by 2: Σ₂ = 4Σ₁ and μ₂ = 2μ₁, so the distance is ‖μ₁‖² + Tr(Σ₁ + 4Σ₁ − 2·2Σ₁) = ‖μ₁‖² + Tr(Σ₁).
        var mu = a.mean(new long[] { 0 });
        var covTrace = (a - mu).pow(2).sum().item<double>() / (a.shape[0] - 1);
        Assert.Equal(mu.pow(2).sum().item<double>() + covTrace, FrechetDistance.Compute(a, a * 2), 5);
        // Two independent samples of N(0, I): small but positive (sampling error only).
        var b = randn(new long[] { 4000, 8 }, dtype: ScalarType.Float64, generator: g);
        double fid = FrechetDistance.Compute(a, b);
        Assert.InRange(fid, 1e-4, 0.1);
    }

    [Fact]
    public void Classifier_learns_a_separable_synthetic_set_and_gives_128_features()
    {
        var folder = Directory.CreateTempSubdirectory("dit-eval-").FullName;
        try
        {
            SyntheticIdx.Write(folder, count: 256, side: 28, classes: 4);
            using var data = IdxDataset.FromFolder(folder);
            using var model = ClassifierTraining.Train(data, epochs: 2, batchSize: 32, seed: 1);
            using var scope = NewDisposeScope();
            var (x, y) = data.Slice(0, data.Count);
            var (pred, feats) = ClassifierTraining.Apply(model, x, batchSize: 100);
            Assert.Equal(new long[] { 256, ImageClassifier.FeatureSize }, feats.shape);
            double acc = pred.eq(y).to_type(ScalarType.Float64).mean().item<double>();
            Assert.True(acc > 0.95, $"accuracy {acc:F3} on a trivially separable set");
            // The predictions come from the head on the same features (the convolutions run once): the classifier's own answer.
            using (no_grad()) Assert.True(model.forward(x).argmax(1).equal(pred).all().item<bool>());
            // Padded 32×32 input is cropped to the centre 28×28: same answer.
            var padded = nn.functional.pad(x, new long[] { 2, 2, 2, 2 }, value: -1);
            Assert.True(ClassifierTraining.Apply(model, padded).Predictions.equal(pred).all().item<bool>());
        }
        finally { Directory.Delete(folder, true); }
    }
}
