using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>Trains and applies the evaluation classifier.</summary>
public static class ClassifierTraining
{
    /// <summary>Adam (lr 1e-3) on cross-entropy over shuffled epochs of <paramref name="data"/>, with a seeded generator.</summary>
    public static ImageClassifier Train(IdxDataset data, int epochs, int batchSize = 128, long seed = 0, Action<int, int, double>? progress = null)
    {
        manual_seed(seed);
        var model = new ImageClassifier(Math.Max(10, data.NumClasses));
        using var optimizer = optim.Adam(model.parameters(), 1e-3);
        using var g = new Generator((ulong)seed);
        model.train();
        int perEpoch = data.Count / batchSize, total = perEpoch * epochs, step = 0;
        for (int e = 0; e < epochs; e++)
        {
            using var order = randperm(data.Count, generator: g);
            for (int b = 0; b < perEpoch; b++)
            {
                using var scope = NewDisposeScope();
                var (x, y) = data.Batch(order[(b * batchSize)..((b + 1) * batchSize)]);
                var loss = nn.functional.cross_entropy(model.forward(x), y);
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
                progress?.Invoke(++step, total, loss.item<float>());
            }
        }
        model.eval();
        return model;
    }

    /// <summary>Predicted classes (N) and penultimate features (N, 128) of images in [−1, 1], in batches.</summary>
    public static (Tensor Predictions, Tensor Features) Apply(ImageClassifier model, Tensor images, int batchSize = 500)
    {
        using var _ = no_grad();
        model.eval();
        var preds = new List<Tensor>();
        var feats = new List<Tensor>();
        using (var scope = NewDisposeScope())
        {
            for (long i = 0; i < images.shape[0]; i += batchSize)
            {
                var x = images.narrow(0, i, Math.Min(batchSize, images.shape[0] - i));
                var f = model.Features(x);
                feats.Add(f.MoveToOuterDisposeScope());
                preds.Add(model.forward(x).argmax(1).MoveToOuterDisposeScope());
            }
        }
        var p = cat(preds, 0);
        var fs = cat(feats, 0);
        foreach (var t in preds.Concat(feats)) t.Dispose();
        return (p, fs);
    }
}
