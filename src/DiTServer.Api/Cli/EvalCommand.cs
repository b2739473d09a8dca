using System.CommandLine;
using System.Globalization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Evaluation;
using DiTServer.Core.Imaging;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;
using TorchSharp.PyBridge;

namespace DiTServer.Api.Cli;

/// <summary><c>eval</c>: judges a 28×28 grayscale class-conditional model (Fashion-MNIST / MNIST) with a small CNN:
/// accuracy on real test images vs on generated samples, and FID on the CNN's features.</summary>
public static class EvalCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string>("--model") { Description = "Model folder with model.json", Required = true };
        var data = new Option<string>("--data") { Description = "IDX dataset folder (train-* to train the classifier, t10k-* to test)", Required = true };
        var classifier = new Option<string>("--classifier") { Description = "Classifier weights (.safetensors); trained and written there when missing",
            Required = true };
        var retrain = new Option<bool>("--train-classifier") { Description = "Train the classifier even if the file exists (overwrites it)" };
        var epochs = new Option<int>("--epochs") { Description = "Classifier training epochs", DefaultValueFactory = _ => 2 };
        var perClass = new Option<int>("--per-class") { Description = "Generated samples per class", DefaultValueFactory = _ => 50 };
        var cfg = new Option<double>("--cfg") { Description = "Guidance scale", DefaultValueFactory = _ => 4.0 };
        var samplerOptions = new SamplerCliOptions("ddpm");
        var seed = new Option<long>("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 0 };
        var chunk = new Option<int>("--chunk") { Description = "Images per sampling call", DefaultValueFactory = _ => 100 };
        var grid = new Option<string?>("--grid") { Description = "Also write a PNG grid: one row per class" };
        var gridPerClass = new Option<int>("--grid-per-class") { Description = "Samples per class in the grid", DefaultValueFactory = _ => 4 };
        var threads = new Option<int?>("--threads") { Description = "Torch CPU threads (default: all cores)" };

        var command = new Command("eval", "Evaluate a grayscale 28×28 class-conditional model with a CNN classifier (accuracy on generated samples, FID)")
        {
            model, data, classifier, retrain, epochs, perClass, cfg, seed, chunk, grid, gridPerClass, threads,
        };
        foreach (var option in samplerOptions.All) command.Options.Add(option);
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            var options = samplerOptions.Read(parse, new SamplingOptions { CfgScale = parse.GetValue(cfg), Seed = parse.GetValue(seed) });
            int n = parse.GetValue(perClass);
            if (n < 2) throw new UsageException("--per-class must be at least 2 (FID needs a covariance)");
            if (parse.GetValue(chunk) < 1) throw new UsageException("--chunk must be positive");

            using var loaded = LoadedModel.Load(parse.GetValue(model)!);
            if (loaded.ImageChannels != 1 || loaded.ImageSize < ImageClassifier.ImageSize)
                throw new UsageException($"eval needs a grayscale model of at least 28×28 pixels; {loaded.Name} makes " +
                    $"{loaded.ImageChannels}×{loaded.ImageSize}²");
            SampleCommand.ValidateForModel(loaded, options);
            string dataDir = parse.GetValue(data)!;
            using var train = IdxDataset.FromFolder(dataDir);
            using var test = IdxDataset.FromFolder(dataDir, test: true);

            string weights = parse.GetValue(classifier)!;
            using var judge = new ImageClassifier(Math.Max(10, train.NumClasses));
            if (File.Exists(weights) && !parse.GetValue(retrain))
                judge.load_safetensors(weights, strict: true);
            else
            {
                int e = parse.GetValue(epochs);
                if (e < 1) throw new UsageException("--epochs must be at least 1");
                using var trained = ClassifierTraining.Train(train, e, progress: (s, total, loss) =>
                {
                    if (s % 100 == 0 || s == total) stderr.WriteLine($"classifier step {s}/{total} loss {loss:F4}");
                });
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(weights))!);
                CheckpointFile.SaveSafetensors(weights, trained.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value));
                judge.load_safetensors(weights, strict: true);
                stdout.WriteLine($"classifier trained ({e} epochs) and written to {weights}");
            }
            judge.eval();

            var (r, gridImages) = GeneratedSampleEvaluation.Run(loaded, judge, test, train, n, options, parse.GetValue(chunk),
                keepForGrid: parse.GetValue(grid) is null ? 0 : parse.GetValue(gridPerClass), log: stderr.WriteLine);
            var inv = CultureInfo.InvariantCulture;
            int generated = n * loaded.Config.NumClasses;
            string interval = options.GuidanceInterval is { } gi ? $", guidance interval {gi}" : "";
            string thresholding = options.Thresholding ? ", dynamic thresholding" : "";
            stdout.WriteLine(string.Create(inv,
                $"model {loaded.Name}: {SampleCommand.Describe(options)} {options.Steps} steps, cfg {options.CfgScale}{interval}{thresholding}, seed " +
                $"{options.Seed}, {n} samples per class ({r.GenerationSeconds:F0} s to generate, {generated / r.GenerationSeconds:F2} images/s)"));
            stdout.WriteLine("| metric | value |");
            stdout.WriteLine("|---|---|");
            stdout.WriteLine(string.Create(inv, $"| classifier accuracy, real test set ({r.TestImages} images) | {r.RealTestAccuracy:F4} |"));
            stdout.WriteLine(string.Create(inv, $"| classifier accuracy, generated ({n * loaded.Config.NumClasses} samples) | {r.GeneratedAccuracy:F4} |"));
            stdout.WriteLine(string.Create(inv, $"| generated / real | {r.Ratio:F3} |"));
            stdout.WriteLine(string.Create(inv, $"| FID (CNN features), generated vs test | {r.Fid:F2} |"));
            stdout.WriteLine(string.Create(inv, $"| FID (CNN features), {n * loaded.Config.NumClasses} real train images vs test | {r.RealFid:F2} |"));
            for (int c = 0; c < r.PerClassAccuracy.Count; c++)
                stdout.WriteLine(string.Create(inv, $"| generated accuracy, {loaded.Classes[c]} | {r.PerClassAccuracy[c]:F2} |"));

            if (parse.GetValue(grid) is { } gridPath && gridImages.Count > 0)
            {
                int side = loaded.ImageSize;
                var (hwc, w, h) = ImageGrid.Tile(gridImages, side, side, 1, nrow: Math.Min(parse.GetValue(gridPerClass), n));
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(gridPath))!);
                File.WriteAllBytes(gridPath, PngWriter.Encode(hwc, w, h, 1));
                stdout.WriteLine($"grid ({loaded.Config.NumClasses} classes × {Math.Min(parse.GetValue(gridPerClass), n)}) written to {gridPath}");
            }
            return CommandLine.ExitOk;
        }));
        return command;
    }
}
