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
/// accuracy on real test images vs on generated samples, FID and precision/recall on the CNN's features, each with a 95%
/// bootstrap interval, per seed set and pooled.</summary>
public static class EvalCommand
{
    private static double[] ParseStrengths(string list)
    {
        var parts = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var values = parts.Select(p => double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v > 0 && v <= 1 ? v
            : throw new UsageException($"--edit-strengths must be numbers in (0, 1] separated by commas, not '{list}'")).ToArray();
        return values.Length > 0 ? values : throw new UsageException("--edit-strengths is empty");
    }

    private static void WriteEditTable(TextWriter stdout, LoadedModel loaded, SamplingOptions options, int perClass, IReadOnlyList<EditScores> edits)
    {
        var inv = CultureInfo.InvariantCulture;
        static string Ci(Estimate e) => string.Create(CultureInfo.InvariantCulture, $"{e.Value:F3} [{e.Low:F3}, {e.High:F3}]");
        stdout.WriteLine(string.Create(inv, $"model {loaded.Name}: image to image, {SampleCommand.Describe(options)} {options.Steps} steps, cfg " +
            $"{options.CfgScale}, seed {options.Seed}, {perClass} real test images per class ({edits[0].Images} per task); target class = the next " +
            $"class; mask = right half redrawn"));
        stdout.WriteLine("| strength | steps run | class kept (own class) | moved to target | masked, moved to target | kept-pixel max error | " +
            "mean change (own class) |");
        stdout.WriteLine("|---|---|---|---|---|---|---|");
        foreach (var e in edits)
            stdout.WriteLine(string.Create(inv, $"| {e.Strength} | {e.StepsRun} | {Ci(e.ClassKept)} | {Ci(e.MovedToTarget)} | {Ci(e.MaskedToTarget)} | " +
                $"{e.KeptPixelMaxError} | {e.MeanChange:F1} |"));
    }

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
        var seed = new Option<long>("--seed") { Description = "Sampling seed of the first seed set", DefaultValueFactory = _ => 0 };
        var seedSets = new Option<int>("--seed-sets") { Description = $"Seed sets of --per-class samples per class; set j starts at seed " +
            $"--seed + {GeneratedSampleEvaluation.SeedSetStride}·j", DefaultValueFactory = _ => 1 };
        var saveSamples = new Option<string?>("--save-samples") { Description = "Also write each seed set's images and labels (IDX files) to this folder" };
        var sampleOnly = new Option<bool>("--sample-only")
        {
            Description = "With --save-samples: write the seed sets and stop (judge them later with --samples)",
        };
        var samples = new Option<string?>("--samples") { Description = "Judge the seed sets that --save-samples wrote to this folder instead of sampling" };
        var pairedWith = new Option<string?>("--paired-with")
        {
            Description = "With --samples: also give each metric minus that of the seed sets in this folder (a reference setting sampled from the " +
                "same seeds), with a paired 95% bootstrap interval",
        };
        var resamples = new Option<int>("--bootstrap") { Description = "Bootstrap resamples of each 95% interval",
            DefaultValueFactory = _ => Bootstrap.DefaultResamples };
        var chunk = new Option<int>("--chunk") { Description = "Images per sampling call", DefaultValueFactory = _ => 100 };
        var grid = new Option<string?>("--grid") { Description = "Also write a PNG grid: one row per class" };
        var gridPerClass = new Option<int>("--grid-per-class") { Description = "Samples per class in the grid", DefaultValueFactory = _ => 4 };
        var threads = new Option<int?>("--threads") { Description = "Torch CPU threads (default: all cores)" };
        var editStrengths = new Option<string?>("--edit-strengths")
        {
            Description = "Judge image to image instead: --per-class real test images per class, edited at each strength (e.g. 0.25,0.5,0.75,1) " +
                "toward their own class, toward the next class, and toward the next class with the right half masked",
        };

        var command = new Command("eval", "Evaluate a grayscale 28×28 class-conditional model with a CNN classifier (accuracy on generated samples, FID)")
        {
            model, data, classifier, retrain, epochs, perClass, cfg, seed, seedSets, saveSamples, sampleOnly, samples, pairedWith, resamples, chunk, grid,
            gridPerClass, threads, editStrengths,
        };
        foreach (var option in samplerOptions.All) command.Options.Add(option);
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            var options = samplerOptions.Read(parse, new SamplingOptions { CfgScale = parse.GetValue(cfg), Seed = parse.GetValue(seed) },
                SampleCommand.ModelDefaults(parse.GetValue(model)!));
            int n = parse.GetValue(perClass);
            if (n < 2) throw new UsageException("--per-class must be at least 2 (FID needs a covariance)");
            if (parse.GetValue(chunk) < 1) throw new UsageException("--chunk must be positive");
            int sets = parse.GetValue(seedSets);
            if (sets < 1) throw new UsageException("--seed-sets must be at least 1");
            if (parse.GetValue(resamples) < 1) throw new UsageException("--bootstrap must be at least 1");
            if (parse.GetValue(sampleOnly) && parse.GetValue(saveSamples) is null) throw new UsageException("--sample-only needs --save-samples");
            if (parse.GetValue(samples) is { } folder && !Directory.Exists(folder)) throw new UsageException($"--samples folder not found: {folder}");
            if (parse.GetValue(pairedWith) is { } reference && (parse.GetValue(samples) is null || !Directory.Exists(reference)))
                throw new UsageException(parse.GetValue(samples) is null ? "--paired-with needs --samples" : $"--paired-with folder not found: {reference}");

            using var loaded = LoadedModel.Load(parse.GetValue(model)!);
            options = samplerOptions.WithModelCache(parse, options, loaded.Manifest.DefaultCache);
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

            if (parse.GetValue(editStrengths) is { } list)
            {
                var strengths = ParseStrengths(list);
                var edits = ImageEditEvaluation.Run(loaded, judge, test, n, options, strengths, resamples: parse.GetValue(resamples), log: stderr.WriteLine);
                WriteEditTable(stdout, loaded, options, n, edits);
                return CommandLine.ExitOk;
            }

            var seeds = Enumerable.Range(0, sets).Select(j => options.Seed + GeneratedSampleEvaluation.SeedSetStride * j).ToList();
            var sampleSets = new List<SampleSet>();
            foreach (long s in seeds)
            {
                SampleSet set;
                if (parse.GetValue(samples) is { } from)
                {
                    set = SampleSet.Load(from, s);
                    if (set.Count != n * loaded.Config.NumClasses || set.Side != loaded.ImageSize)
                        throw new UsageException($"{set.ImagesFile(from)} holds {set.Count} images of {set.Side}² pixels; --per-class {n} on " +
                            $"{loaded.Name} makes {n * loaded.Config.NumClasses} of {loaded.ImageSize}²");
                }
                else set = GeneratedSampleEvaluation.Generate(loaded, n, options with { Seed = s }, parse.GetValue(chunk), log: stderr.WriteLine);
                if (parse.GetValue(saveSamples) is { } to) set.Save(to);
                sampleSets.Add(set);
            }
            if (parse.GetValue(sampleOnly))
            {
                double seconds = sampleSets.Sum(x => x.GenerationSeconds);
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"model {loaded.Name}: {SampleCommand.Describe(options)} {options.Steps} " +
                    $"steps, cfg {options.CfgScale}, seed {options.Seed}, {n} samples per class, {sets} seed set(s) written to " +
                    $"{parse.GetValue(saveSamples)} ({seconds:F0} s to generate, {sampleSets.Sum(x => x.Count) / seconds:F2} images/s)"));
                return CommandLine.ExitOk;
            }
            List<SampleSet>? references = null;
            if (parse.GetValue(pairedWith) is { } pairedFolder)
            {
                references = seeds.Select(s => SampleSet.Load(pairedFolder, s)).ToList();
                if (references.Zip(sampleSets).Any(p => !p.First.Labels.SequenceEqual(p.Second.Labels) || p.First.Side != p.Second.Side))
                    throw new UsageException($"--paired-with {pairedFolder} holds other classes or sizes than --samples: not the same seeds' images");
            }
            var r = GeneratedSampleEvaluation.Judge(judge, test, train, sampleSets, loaded.Config.NumClasses, parse.GetValue(resamples),
                log: stderr.WriteLine, pairedWith: references);
            var inv = CultureInfo.InvariantCulture;
            int generated = sampleSets.Sum(x => x.Count);
            string interval = options.GuidanceInterval is { } gi ? $", guidance interval {gi}" : "";
            string thresholding = options.Thresholding ? ", dynamic thresholding" : "";
            string speed = r.GenerationSeconds > 0
                ? $"{r.GenerationSeconds:F0} s to generate, {generated / r.GenerationSeconds:F2} images/s"
                : "read from files";
            stdout.WriteLine(string.Create(inv,
                $"model {loaded.Name}: {SampleCommand.Describe(options)} {options.Steps} steps, cfg {options.CfgScale}{interval}{thresholding}, seed " +
                $"{options.Seed}, {n} samples per class, {sets} seed set(s) ({speed})"));
            static string Ci(Estimate e, string f) =>
                $"{e.Value.ToString(f, CultureInfo.InvariantCulture)} [{e.Low.ToString(f, CultureInfo.InvariantCulture)}, " +
                $"{e.High.ToString(f, CultureInfo.InvariantCulture)}]";
            stdout.WriteLine($"| metric ({(sets > 1 ? "seed sets pooled" : "one seed set")}) | value [95% bootstrap interval, " +
                $"{parse.GetValue(resamples)} resamples] |");
            stdout.WriteLine("|---|---|");
            stdout.WriteLine(string.Create(inv, $"| classifier accuracy, real test set ({r.TestImages} images) | {r.RealTestAccuracy:F4} |"));
            stdout.WriteLine($"| classifier accuracy, generated ({generated} samples) | {Ci(r.Pooled.Accuracy, "F4")} |");
            stdout.WriteLine(string.Create(inv, $"| generated / real | {r.Pooled.Accuracy.Value / r.RealTestAccuracy:F3} |"));
            stdout.WriteLine($"| FID (CNN features), generated vs test | {Ci(r.Pooled.Fid, "F2")} |");
            stdout.WriteLine(string.Create(inv, $"| FID (CNN features), {sampleSets[0].Count} real train images vs test | {r.RealFid:F2} |"));
            int against = Math.Min(generated, r.TestImages);
            stdout.WriteLine($"| precision (k = {ManifoldPrecisionRecall.DefaultK}), generated vs {against} test images | {Ci(r.Pooled.Precision, "F4")} |");
            stdout.WriteLine($"| recall (k = {ManifoldPrecisionRecall.DefaultK}), generated vs {against} test images | {Ci(r.Pooled.Recall, "F4")} |");
            for (int c = 0; c < r.Pooled.PerClassAccuracy.Count; c++)
                stdout.WriteLine(string.Create(inv, $"| generated accuracy, {loaded.Classes[c]} | {r.Pooled.PerClassAccuracy[c]:F2} |"));
            if (r.Difference is { } d)
            {
                stdout.WriteLine();
                stdout.WriteLine($"| paired difference from {parse.GetValue(pairedWith)} (same seeds) | value [95% paired bootstrap interval] |");
                stdout.WriteLine("|---|---|");
                stdout.WriteLine($"| accuracy difference | {Ci(d.Accuracy, "F4")} |");
                stdout.WriteLine($"| FID difference | {Ci(d.Fid, "F2")} |");
                stdout.WriteLine($"| precision difference | {Ci(d.Precision, "F4")} |");
                stdout.WriteLine($"| recall difference | {Ci(d.Recall, "F4")} |");
            }
            if (sets > 1)
            {
                stdout.WriteLine();
                stdout.WriteLine("| seed set | images | accuracy [95% CI] | FID [95% CI] | precision [95% CI] | recall [95% CI] |");
                stdout.WriteLine("|---|---|---|---|---|---|");
                foreach (var x in r.SeedSets.Append(r.Pooled))
                    stdout.WriteLine($"| {x.Name} | {x.Images} | {Ci(x.Accuracy, "F4")} | {Ci(x.Fid, "F2")} | {Ci(x.Precision, "F4")} | " +
                        $"{Ci(x.Recall, "F4")} |");
            }

            if (parse.GetValue(grid) is { } gridPath && parse.GetValue(gridPerClass) > 0)
            {
                int side = loaded.ImageSize, per = Math.Min(parse.GetValue(gridPerClass), n);
                var first = sampleSets[0];
                var gridImages = Enumerable.Range(0, loaded.Config.NumClasses).SelectMany(c => Enumerable.Range(c * n, per))
                    .Select(i => first.Pixels.AsSpan(i * side * side, side * side).ToArray()).ToList();
                var (hwc, w, h) = ImageGrid.Tile(gridImages, side, side, 1, nrow: per);
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(gridPath))!);
                File.WriteAllBytes(gridPath, PngWriter.Encode(hwc, w, h, 1));
                stdout.WriteLine($"grid ({loaded.Config.NumClasses} classes × {per}) written to {gridPath}");
            }
            return CommandLine.ExitOk;
        }));
        return command;
    }
}
