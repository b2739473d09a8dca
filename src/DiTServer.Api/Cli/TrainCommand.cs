using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using DiTServer.Core.Model;
using DiTServer.Core.Training;
using Spectre.Console;

namespace DiTServer.Api.Cli;

/// <summary><c>train</c>: trains a class-conditional DiT on an IDX or class-subfolder dataset (in pixel space, or with
/// <c>--vae</c> in that VAE's latent space), or with <c>--distill-from</c> distils a few-step student from a model, checkpointing atomically;
/// Ctrl+C (or SIGTERM) saves a checkpoint and exits; <c>--resume</c> continues exactly where it stopped.</summary>
public static class TrainCommand
{
    public const int ExitInterrupted = 130;

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var data = new Option<string?>("--data") { Description = "Folder with train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz] (MNIST / " +
            "Fashion-MNIST layout), or one subfolder of images per class" };
        var imageSize = new Option<int?>("--image-size") { Description = "Image side for a class-subfolder dataset (center crop + resize, as train.py)" };
        var channels = new Option<int>("--channels") { Description = "1 or 3 channels for a class-subfolder dataset", DefaultValueFactory = _ => 3 };
        var output = new Option<string>("--out") { Description = "Run folder: checkpoint.ckpt, loss.csv, and the exported model at the end", Required = true };
        var resume = new Option<bool>("--resume") { Description = "Continue from <out>/checkpoint.ckpt (its model and options; --steps may raise the total)" };
        var name = new Option<string?>("--name") { Description = "Model name in model.json (default: the out folder's name)" };
        var arch = new Option<string?>("--arch") { Description = "Preset such as DiT-S/4 (else --hidden/--depth/--heads/--patch)" };
        var hidden = new Option<int>("--hidden") { Description = "Hidden size", DefaultValueFactory = _ => 128 };
        var depth = new Option<int>("--depth") { Description = "Number of DiT blocks", DefaultValueFactory = _ => 6 };
        var heads = new Option<int>("--heads") { Description = "Attention heads", DefaultValueFactory = _ => 4 };
        var patch = new Option<int>("--patch") { Description = "Patch size", DefaultValueFactory = _ => 4 };
        var conditioning = new Option<string>("--conditioning") { Description = "adaLN-Zero (paper default), adaLN, cross-attention or in-context",
            DefaultValueFactory = _ => "adaLN-Zero" };
        var padTo = new Option<int?>("--pad-to") { Description = "Zero-pad images to this side (e.g. 32); default: native size" };
        var classDropout = new Option<double>("--class-dropout") { Description = "Label dropout probability (null class for guidance)",
            DefaultValueFactory = _ => 0.1 };
        var learnSigma = new Option<bool>("--learn-sigma") { Description = "Learn the variance (official loss mse + vb)", DefaultValueFactory = _ => true };
        var classNames = new Option<string?>("--class-names") { Description = "Comma-separated class names for model.json (e.g. T-shirt/top,Trouser,…)" };
        var steps = new Option<long>("--steps") { Description = "Total optimizer steps", DefaultValueFactory = _ => 1000 };
        var batch = new Option<int>("--batch") { Description = "Batch size", DefaultValueFactory = _ => 256 };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate (paper: 1e-4)", DefaultValueFactory = _ => 1e-4 };
        var ema = new Option<double>("--ema") { Description = "EMA decay (paper: 0.9999)", DefaultValueFactory = _ => 0.9999 };
        var emaWarmup = new Option<bool>("--ema-warmup") { Description = "EMA decay min(ema, (1+n)/(10+n))" };
        var seed = new Option<long>("--seed") { Description = "Seed (weights, batches, timesteps, noise, label dropout)", DefaultValueFactory = _ => 0 };
        var threads = new Option<int?>("--threads") { Description = "Torch CPU threads (default: all cores)" };
        var logEvery = new Option<int>("--log-every") { Description = "Steps per loss-curve row", DefaultValueFactory = _ => 50 };
        var ckptEvery = new Option<int>("--checkpoint-every") { Description = "Steps between checkpoints (0: only at the end / on interrupt)",
            DefaultValueFactory = _ => 500 };
        var device = new Option<string>("--device") { Description = "cpu or cuda[:i]", DefaultValueFactory = _ => "cpu" };
        var vae = new Option<string?>("--vae") { Description = "Train in the latent space of this diffusers AutoencoderKL folder (images encoded once into " +
            "<out>/latents.cache; the export decodes with it)" };

        var distillFrom = new Option<string?>("--distill-from") { Description = "Distil a few-step, guidance-conditioned student from this model " +
            "folder instead of training on --data (docs/training.md); the student starts from its weights" };
        var studentSteps = new Option<int>("--student-steps") { Description = "Model calls per image of the student: 1, 2 or 4",
            DefaultValueFactory = _ => 4 };
        var teacherSteps = new Option<int>("--teacher-steps") { Description = "UniPC steps of each teacher trajectory (a multiple of --student-steps)",
            DefaultValueFactory = _ => 20 };
        var trajectories = new Option<int>("--trajectories") { Description = "Teacher trajectories to distil from (made once into <out>/trajectories)",
            DefaultValueFactory = _ => 2048 };
        var guidanceRange = new Option<string>("--guidance-range") { Description = "lo,hi: the guidance scales the student learns (uniform)",
            DefaultValueFactory = _ => "1,6" };

        var command = new Command("train",
            "Train a class-conditional DiT on an IDX (MNIST / Fashion-MNIST) or class-subfolder dataset, in pixel space or in a VAE's latent space")
        {
            data, imageSize, channels, output, resume, name, arch, hidden, depth, heads, patch, conditioning, padTo, classDropout, learnSigma, classNames,
            steps, batch, lr, ema, emaWarmup, seed, threads, logEvery, ckptEvery, device, vae,
            distillFrom, studentSteps, teacherSteps, trajectories, guidanceRange,
        };
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            var torchDevice = DeviceOption.Parse(parse.GetValue(device)!);
            string outDir = Path.GetFullPath(parse.GetValue(output)!);
            string ckpt = Path.Combine(outDir, TrainingSession.CheckpointFile);

            TrainingRunInfo info;
            if (parse.GetValue(resume))
            {
                info = TrainingCheckpoint.ReadInfo(ckpt);
                // Only the step count may change on resume; every other option is the run's own.
                if (parse.GetResult(steps) is { Implicit: false })
                    info = info with { Options = info.Options with { Steps = parse.GetValue(steps) } };
                if (parse.GetValue(vae) is { } vaeDir && Path.TrimEndingDirectorySeparator(Path.GetFullPath(vaeDir)) != info.Latent?.Vae)
                    throw new UsageException(info.Latent is null
                        ? $"{ckpt} is a pixel-space run; --vae cannot be added on resume"
                        : $"{ckpt} was trained with the VAE at {info.Latent.Vae}; resuming with a different VAE ({Path.GetFullPath(vaeDir)}) is not possible");
                // TrainingRun checks that the recorded folder still holds the same VAE.
            }
            else
            {
                if (File.Exists(ckpt))
                    throw new UsageException($"{ckpt} exists; pass --resume to continue it or choose another --out");
                var options = new TrainingOptions
                {
                    Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch), LearningRate = parse.GetValue(lr),
                    EmaDecay = parse.GetValue(ema), EmaWarmup = parse.GetValue(emaWarmup), Seed = parse.GetValue(seed),
                    LogEvery = parse.GetValue(logEvery), CheckpointEvery = parse.GetValue(ckptEvery),
                };
                if (parse.GetValue(distillFrom) is { } teacher)
                {
                    if (parse.GetValue(data) is not null)
                        throw new UsageException("--data and --distill-from exclude each other: a student learns from its teacher");
                    if (parse.GetValue(vae) is not null)
                        throw new UsageException("--vae does not apply to --distill-from: the student works where its teacher does");
                    info = DistillationInfo(teacher, parse.GetValue(studentSteps), parse.GetValue(teacherSteps), parse.GetValue(trajectories),
                        parse.GetValue(guidanceRange)!, parse.GetValue(name) ?? new DirectoryInfo(outDir).Name, options);
                }
                else
                {
                    string dataDir = parse.GetValue(data) ?? throw new UsageException("--data is required (or --distill-from, or --resume)");
                    if (!Directory.Exists(dataDir)) throw new DirectoryNotFoundException($"dataset folder not found: {dataDir}");
                    bool idx = IsIdxFolder(dataDir);
                    if (!idx && parse.GetValue(imageSize) is null)
                        throw new UsageException($"{dataDir} holds no train-*-ubyte files; for a class-subfolder dataset give --image-size");
                    info = new TrainingRunInfo
                    {
                        Name = parse.GetValue(name) ?? new DirectoryInfo(outDir).Name,
                        Dataset = Path.GetFullPath(dataDir),
                        DatasetKind = idx ? "idx" : "image-folder",
                        ImageSize = idx ? null : parse.GetValue(imageSize),
                        Channels = idx ? null : parse.GetValue(channels),
                        PadTo = parse.GetValue(padTo),
                        Latent = parse.GetValue(vae) is { } vaeDir ? LatentSettings.ForFolder(vaeDir).Settings : null,
                        ClassNames = parse.GetValue(classNames)?.Split(',', StringSplitOptions.TrimEntries),
                        Options = options,
                        Config = ArchitectureFrom(parse.GetValue(arch), parse.GetValue(hidden), parse.GetValue(depth), parse.GetValue(heads),
                            parse.GetValue(patch)) with
                        {
                            ClassDropoutProb = parse.GetValue(classDropout),
                            Conditioning = ParseConditioning(parse.GetValue(conditioning)!),
                            LearnSigma = parse.GetValue(learnSigma),
                        },
                    };
                }
            }
            try { info.Options.Validate(); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }

            using var images = info.Distillation is null ? TrainingRun.OpenDataset(info) : null;
            if (images is ImageFolderDataset folder && info.ClassNames is null) info = info with { ClassNames = folder.ClassNames };

            using var cts = new CancellationTokenSource();
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; cts.Cancel(); });
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; cts.Cancel(); });
            bool plain = Console.IsOutputRedirected || !ReferenceEquals(stdout, Console.Out);
            bool resumed = parse.GetValue(resume);
            // The orchestration (latents, trainer, resume, checkpoints, export) is the admin API's too; this verb maps arguments.
            var outcome = TrainingRun.Execute(info, outDir, images, resumed, initial: null, cts.Token, log: stdout.WriteLine, device: torchDevice,
                started: (trainer, run) =>
                {
                    long parameters = trainer.Model.parameters().Where(p => p.requires_grad).Sum(p => p.numel());
                    stdout.WriteLine($"training {run.Name}: hidden {run.Config.HiddenSize}, depth {run.Config.Depth}, heads {run.Config.NumHeads}, " +
                                     $"patch {run.Config.PatchSize}, " +
                                     $"{run.Config.InChannels}×{run.Config.InputSize}² {(run.Latent is null ? "pixel" : "latent")} input, " +
                                     $"{run.Config.NumClasses} classes, {parameters / 1e6:F2} M parameters; " +
                                     $"{trainer.DatasetCount} {(run.Distillation is null ? "images" : "teacher trajectories")}; " +
                                     $"from step {trainer.Step} to {run.Options.Steps}, batch {run.Options.BatchSize}, " +
                                     $"lr {run.Options.LearningRate.ToString(CultureInfo.InvariantCulture)}, threads {TorchSharp.torch.get_num_threads()}");
                },
                exportWeightsName: $"{info.Name}.pt",
                runSession: (session, cancel) => plain ? session.Run(cancel, PlainProgress(stdout, info.Options.LogEvery))
                    : RunWithProgressBar(session, cancel));
            if (!outcome.Finished)
            {
                stdout.WriteLine($"interrupted at step {outcome.Step}; checkpoint {outcome.CheckpointPath}; continue with: train --out {outDir} --resume");
                return ExitInterrupted;
            }
            stdout.WriteLine($"done: {outcome.Step} steps; exported {string.Join(", ", outcome.ExportedFiles.Select(Path.GetFileName))} to {outDir}");
            return CommandLine.ExitOk;
        }));
        return command;
    }

    /// <summary>A distillation run from the CLI's values; bad values are usage errors naming the flag.</summary>
    private static TrainingRunInfo DistillationInfo(string teacher, int studentSteps, int teacherSteps, int trajectories, string guidanceRange,
        string name, TrainingOptions options)
    {
        var range = guidanceRange.Split(',', StringSplitOptions.TrimEntries);
        if (range.Length != 2 || !double.TryParse(range[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var lo)
            || !double.TryParse(range[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var hi))
            throw new UsageException($"--guidance-range must be two numbers lo,hi such as 1,6; got '{guidanceRange}'");
        var settings = new DistillationSettings
        {
            Teacher = Path.GetFullPath(teacher), StudentSteps = studentSteps, TeacherSteps = teacherSteps, Trajectories = trajectories,
            MinGuidance = lo, MaxGuidance = hi,
        };
        try { settings.Validate(); }
        catch (ArgumentException e) { throw new UsageException($"--{e.ParamName?.Replace('_', '-')}: {e.Message.Split(" (Parameter")[0]}"); }
        var manifest = DiTServer.Core.Checkpoints.ModelManifest.Load(teacher); // a missing or bad teacher fails here, before any work
        return new TrainingRunInfo
        {
            Name = name, Options = options, Distillation = settings, Config = manifest.Config with { GuidanceConditioned = true },
        };
    }

    internal static Conditioning ParseConditioning(string name)
    {
        try { return ConditioningNames.Parse(name); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    private static bool IsIdxFolder(string dir) =>
        Directory.Exists(dir) && Directory.EnumerateFiles(dir, "train-images-idx3-ubyte*").Any();

    internal static DiTConfig ArchitectureFrom(string? preset, int hidden, int depth, int heads, int patch)
    {
        try
        {
            var config = preset is not null ? DiTConfig.FromPreset(preset)
                : new DiTConfig { HiddenSize = hidden, Depth = depth, NumHeads = heads, PatchSize = patch };
            return config;
        }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    private static Action<TrainingProgress> PlainProgress(TextWriter stdout, int every) => p =>
    {
        if (p.Step % every == 0 || p.Step == p.TotalSteps)
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"step {p.Step}/{p.TotalSteps} loss {p.RecentLoss:F4} {p.StepsPerSecond:F2} it/s ETA {p.Eta:hh\\:mm\\:ss}"));
    };

    private static bool RunWithProgressBar(TrainingSession session, CancellationToken cancel)
    {
        bool finished = false;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: 1);
                finished = session.Run(cancel, p =>
                {
                    task.MaxValue = p.TotalSteps;
                    task.Value = p.Step;
                    task.Description = string.Create(CultureInfo.InvariantCulture,
                        $"step {p.Step}/{p.TotalSteps}  loss {p.RecentLoss:F4}  {p.StepsPerSecond:F2} it/s  ETA {p.Eta:hh\\:mm\\:ss}");
                });
            });
        return finished;
    }
}
