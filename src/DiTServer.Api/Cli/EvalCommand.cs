using System.CommandLine;
using System.Globalization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Evaluation;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;

namespace DiTServer.Api.Cli;

/// <summary><c>eval</c>: scores a Fashion-MNIST model with the project's classifier (accuracy on generated
/// samples per class, FID on its features); <c>eval train-classifier</c> trains that classifier.</summary>
public static class EvalCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string>("--model") { Description = "Model folder with model.json", Required = true };
        var data = new Option<string>("--data") { Description = "IDX dataset folder (train-* and t10k-* files)", DefaultValueFactory = _ => "/usr/share/datasets/fashion-mnist" };
        var classifier = new Option<string>("--classifier") { Description = "Classifier folder (from `eval train-classifier`)", DefaultValueFactory = _ => "models/fashion-classifier" };
        var perClass = new Option<int>("--per-class") { Description = "Generated images per class", DefaultValueFactory = _ => 100 };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 50 };
        var cfg = new Option<double>("--cfg") { DefaultValueFactory = _ => 4.0 };
        var sampler = new Option<string>("--sampler") { DefaultValueFactory = _ => "ddpm" };
        var seed = new Option<long>("--seed") { DefaultValueFactory = _ => 0 };
        var threads = new Option<int?>("--threads");

        var command = new Command("eval", "Score a Fashion-MNIST model: classifier accuracy on its samples and FID on classifier features")
        {
            model, data, classifier, perClass, steps, cfg, sampler, seed, threads,
        };
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            var options = new SamplingOptions
            {
                Steps = parse.GetValue(steps), CfgScale = parse.GetValue(cfg), Seed = parse.GetValue(seed),
                Sampler = SampleCommand.ParseSampler(parse.GetValue(sampler)!),
            };
            SampleCommand.ValidateOptions(options);
            int n = parse.GetValue(perClass);
            if (n < 2) throw new UsageException("--per-class must be at least 2");
            using var loaded = LoadedModel.Load(parse.GetValue(model)!);
            using var judge = ClassifierFile.Load(parse.GetValue(classifier)!);
            using var test = IdxDataset.FromFolder(parse.GetValue(data)!, test: true);
            using var train = IdxDataset.FromFolder(parse.GetValue(data)!);
            var report = SampleEvaluation.Run(loaded, judge, test, train, n, options, log: stdout.WriteLine);
            var inv = CultureInfo.InvariantCulture;
            stdout.WriteLine();
            stdout.WriteLine($"| model | sampler | steps | cfg | per class | real-test acc | generated acc | ratio | FID gen↔test | FID train↔test |");
            stdout.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
            stdout.WriteLine(string.Create(inv, $"| {loaded.Name} | {options.Sampler.ToString().ToLowerInvariant()} | {options.Steps} | {options.CfgScale} | {n} | {report.RealTestAccuracy:F4} | {report.GeneratedAccuracy:F4} | {report.AccuracyRatio:F3} | {report.FidGeneratedVsTest:F2} | {report.FidTrainVsTest:F2} |"));
            stdout.WriteLine(string.Create(inv, $"per class: {string.Join(", ", report.GeneratedAccuracyPerClass.Select((a, i) => $"{loaded.Classes[i]} {a:F2}"))}; generation {report.GenerationTime.TotalSeconds:F0} s"));
            return CommandLine.ExitOk;
        }));

        var trainData = new Option<string>("--data") { DefaultValueFactory = _ => "/usr/share/datasets/fashion-mnist" };
        var output = new Option<string>("--out") { DefaultValueFactory = _ => "models/fashion-classifier" };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 3 };
        var trainSeed = new Option<long>("--seed") { DefaultValueFactory = _ => 0 };
        var trainThreads = new Option<int?>("--threads");
        var trainClassifier = new Command("train-classifier", "Train the evaluation CNN on the IDX training set and report its test accuracy")
        {
            trainData, output, epochs, trainSeed, trainThreads,
        };
        trainClassifier.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(trainThreads));
            using var train = IdxDataset.FromFolder(parse.GetValue(trainData)!);
            using var test = IdxDataset.FromFolder(parse.GetValue(trainData)!, test: true);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using var net = ClassifierTraining.Train(train, parse.GetValue(epochs), seed: parse.GetValue(trainSeed),
                progress: (step, loss) => { if (step % 200 == 0) stdout.WriteLine($"step {step} loss {loss:F4}"); });
            var (images, labels) = ClassifierTraining.All(test);
            using var owned = images;
            var (pred, features) = ClassifierTraining.Classify(net, images);
            features.Dispose();
            double accuracy = pred.Zip(labels, (p, l) => p == l ? 1.0 : 0.0).Average();
            ClassifierFile.Save(parse.GetValue(output)!, net, accuracy);
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"test accuracy {accuracy:F4} after {parse.GetValue(epochs)} epochs, {clock.Elapsed.TotalSeconds:F0} s; saved to {parse.GetValue(output)}"));
            return CommandLine.ExitOk;
        }));
        command.Subcommands.Add(trainClassifier);
        return command;
    }
}
