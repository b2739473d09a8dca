using DiTServer.Core.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>Trains and scores the <see cref="FashionClassifier"/> (Adam, cross-entropy, a fixed seed).</summary>
public static class ClassifierTraining
{
    public static FashionClassifier Train(ITrainingDataset data, int epochs = 2, int batchSize = 128, double lr = 1e-3, long seed = 0,
        Action<int, double>? progress = null)
    {
        manual_seed(seed); // the conv/linear default init draws from the global generator
        var model = new FashionClassifier(data.ImageSize, data.Channels, Math.Max(10, data.NumClasses));
        using var optimizer = optim.Adam(model.parameters(), lr);
        using var generator = new Generator((ulong)seed + 1);
        model.train();
        int stepsPerEpoch = data.Count / batchSize, step = 0;
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            using var order = randperm(data.Count, generator: generator);
            for (int b = 0; b < stepsPerEpoch; b++)
            {
                using var scope = NewDisposeScope();
                var (images, labels) = data.Batch(order[(b * batchSize)..((b + 1) * batchSize)]);
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(model.forward(images), labels);
                loss.backward();
                optimizer.step();
                if (++step % 50 == 0) progress?.Invoke(step, loss.item<float>());
            }
        }
        model.eval();
        return model;
    }

    /// <summary>Predicted classes (N) and features (N, 128) for images in [-1, 1], in batches.</summary>
    public static (long[] Predictions, Tensor Features) Classify(FashionClassifier model, Tensor images, int batchSize = 512)
    {
        using var _ = inference_mode();
        var predictions = new List<long>();
        var features = new List<Tensor>();
        for (long i = 0; i < images.shape[0]; i += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = images[(int)i..(int)Math.Min(images.shape[0], i + batchSize)];
            var f = model.Features(batch);
            predictions.AddRange(model.forward(batch).argmax(1).data<long>());
            features.Add(f.MoveToOuterDisposeScope());
        }
        var all = cat(features, 0);
        foreach (var f in features) f.Dispose();
        return (predictions.ToArray(), all);
    }

    /// <summary>All images (N, C, S, S) and labels of a dataset, for scoring.</summary>
    public static (Tensor Images, long[] Labels) All(ITrainingDataset data)
    {
        using var scope = NewDisposeScope();
        var (images, labels) = data.Batch(arange(data.Count, dtype: int64));
        return (images.MoveToOuterDisposeScope(), labels.data<long>().ToArray());
    }
}
