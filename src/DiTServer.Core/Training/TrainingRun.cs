using DiTServer.Core.Checkpoints;
using DiTServer.Core.Pipeline;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>How a <see cref="TrainingRun"/> ended.</summary>
/// <param name="Finished">True when it reached its step count (and was exported); false when cancelled (checkpoint kept).</param>
/// <param name="ExportedFiles">The export's files when finished.</param>
public sealed record TrainingRunOutcome(bool Finished, long Step, string CheckpointPath, IReadOnlyList<string> ExportedFiles);

/// <summary>One training run from its description to its export, new or resumed: the orchestration behind the
/// <c>train</c> verb and the admin training API, which only map their arguments to a <see cref="TrainingRunInfo"/>.</summary>
/// <remarks>Everything here runs on the caller's thread and owns its tensors: the latent cache, the trainer and the
/// initial weights are disposed on that thread before it returns, so a host can await the thread and then exit.</remarks>
public static class TrainingRun
{
    /// <summary>The dataset <paramref name="info"/> names (IDX folder or one subfolder of images per class); the caller disposes it.</summary>
    public static ITrainingDataset OpenDataset(TrainingRunInfo info, DatasetScan? scan = null) =>
        OpenDataset(info.DatasetKind, info.Dataset ?? throw new InvalidDataException("the run names no dataset"), info.ImageSize, info.Channels, info.PadTo,
            scan);

    /// <summary>The dataset in <paramref name="folder"/>: <paramref name="kind"/> "idx" (IDX files), or "image-folder" (one
    /// subfolder of images per class, read at <paramref name="imageSize"/>); the caller disposes it.</summary>
    /// <param name="scan">Limits of reading (time, pixels per image); default <see cref="DatasetScan.Default"/>.</param>
    public static ITrainingDataset OpenDataset(string kind, string folder, int? imageSize, int? channels, int? padTo = null,
        DatasetScan? scan = null) => kind switch
    {
        "idx" => IdxDataset.FromFolder(folder, padTo: padTo, scan: scan),
        "image-folder" => ImageFolderDataset.Load(folder, imageSize ?? throw new InvalidDataException("an image-folder run needs its image size"),
            channels ?? 3, scan),
        _ => throw new InvalidDataException($"unknown dataset kind '{kind}' in the run"),
    };

    /// <summary>The run's info with the model input and class count the dataset (or its latents) makes.</summary>
    public static TrainingRunInfo FitToDataset(TrainingRunInfo info, ITrainingDataset dataset) => info with
    {
        Config = info.Config with
        {
            InputSize = dataset.ImageSize, InChannels = dataset.Channels,
            NumClasses = Math.Max(dataset.NumClasses, info.ClassNames?.Count ?? 0),
        },
    };

    /// <summary>Trains on <paramref name="images"/> (encoded once to latents for a latent run) until the step count or
    /// cancellation, checkpointing atomically; at the end exports the EMA model into <paramref name="outDir"/>.</summary>
    /// <param name="resume">Continue from <c>outDir/checkpoint.ckpt</c>: its weights, optimizer, RNG and step; only the
    /// step count of <paramref name="info"/> may differ from the checkpoint's.</param>
    /// <param name="initial">Weights to start a new run from (fine-tuning); disposed by the caller.</param>
    /// <param name="started">Called once the trainer is ready (before the first step), with the info it trains.</param>
    /// <param name="exportWeightsName">Also export the raw weights under this name (the CLI writes <c>name.pt</c>).</param>
    public static TrainingRunOutcome Execute(TrainingRunInfo info, string outDir, ITrainingDataset? images, bool resume,
        IReadOnlyDictionary<string, Tensor>? initial, CancellationToken cancel, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, Device? device = null, Action<Trainer, TrainingRunInfo>? started = null, string? exportWeightsName = null,
        Func<TrainingSession, CancellationToken, bool>? runSession = null)
    {
        if (info.Distillation is not null)
            return Distil(info, outDir, resume, cancel, progress, log, device, started, exportWeightsName, runSession);
        if (images is null) throw new ArgumentNullException(nameof(images), "a training run (not a distillation) needs its dataset");
        if (resume) info.Latent?.VerifyUnchanged(); // the same VAE, or the resumed steps would train on other latents
        using var latents = info.Latent is { } latent
            ? LatentCache.LoadOrEncode(Path.Combine(outDir, LatentCache.FileName), images, latent, log)
            : null;
        ITrainingDataset dataset = latents ?? images;
        info = FitToDataset(info, dataset);
        if (info.ClassNames is { } names && names.Count != info.Config.NumClasses)
            throw new ArgumentException($"{names.Count} class names given but the dataset has {info.Config.NumClasses} classes");
        cancel.ThrowIfCancellationRequested();

        // What the trainer and its steps take, beside the estimate the admin API checks before it starts a job: the
        // peak is reset here, once the dataset (and its latents) are in memory, and read after the run.
        long? before = ProcessMemory.ResetPeak() ? ProcessMemory.Rss() : null;
        using var trainer = new Trainer(info.Config, info.Options, dataset, device);
        return Train(trainer, info, outDir, resume, initial, before, cancel, progress, log, device, started, exportWeightsName, runSession);
    }

    /// <summary>A distillation run: the teacher's guided trajectories (made once, kept in the run folder), then a
    /// guidance-conditioned student that starts from the teacher's weights learns to land on them
    /// (<see cref="TrajectoryDistillation"/>); the export names its teacher, sampler and steps.</summary>
    private static TrainingRunOutcome Distil(TrainingRunInfo info, string outDir, bool resume, CancellationToken cancel,
        Action<TrainingProgress>? progress, Action<string>? log, Device? device, Action<Trainer, TrainingRunInfo>? started, string? exportWeightsName,
        Func<TrainingSession, CancellationToken, bool>? runSession)
    {
        var distill = info.Distillation!;
        distill.Validate();
        using var teacher = LoadedModel.Load(distill.Teacher, device);
        if (teacher.Config.GuidanceConditioned) throw new ArgumentException($"{distill.Teacher} is itself a distilled student; distil from its teacher");
        if (teacher.Config.ClassDropoutProb <= 0)
            throw new ArgumentException($"{distill.Teacher} has no null class (trained without label dropout): there is no guidance to distil");
        info = info with
        {
            Config = teacher.Config with { GuidanceConditioned = true },
            ClassNames = Enumerable.Range(0, teacher.Classes.Count).Select(i => teacher.Classes[i]).ToList(),
            Latent = null,
        };
        Directory.CreateDirectory(outDir);
        using var bank = TeacherTrajectories.LoadOrMake(outDir, teacher, distill, info.Options.Seed, cancel, log);
        long? before = ProcessMemory.ResetPeak() ? ProcessMemory.Rss() : null;
        using var trainer = new Trainer(info.Config, info.Options, bank, distill.StudentSteps, device);
        var start = resume ? null : TrajectoryDistillation.StudentStart(teacher.Model, trainer.Model);
        return Train(trainer, info, outDir, resume, start, before, cancel, progress, log, device, started, exportWeightsName, runSession,
            ModelExport.Distilled.Of(distill, teacher.Manifest));
    }

    private static TrainingRunOutcome Train(Trainer trainer, TrainingRunInfo info, string outDir, bool resume, IReadOnlyDictionary<string, Tensor>? initial,
        long? before, CancellationToken cancel, Action<TrainingProgress>? progress, Action<string>? log, Device? device,
        Action<Trainer, TrainingRunInfo>? started, string? exportWeightsName, Func<TrainingSession, CancellationToken, bool>? runSession,
        ModelExport.Distilled? distilled = null)
    {
        if (resume)
            info = TrainingCheckpoint.Restore(Path.Combine(outDir, TrainingSession.CheckpointFile), trainer) with { Options = info.Options };
        else if (initial is not null)
        {
            StateDict.LoadStrict(trainer.Model, initial, "init_from");
            StateDict.LoadStrict(trainer.Ema.Model, initial, "init_from");
        }
        var session = new TrainingSession(trainer, info, outDir);
        started?.Invoke(trainer, info);
        bool finished = runSession is null ? session.Run(cancel, progress) : runSession(session, cancel);
        if (before is { } start && ProcessMemory.Peak() is { } peak && (device ?? CPU).type == TorchSharp.DeviceType.CPU)
            log?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"memory: training grew the process's RSS by {(peak - start) / 1048576.0:F1} MiB at its peak (estimate " +
                $"{TrainingFootprint.TrainingBytes(info.Config, info.Options.BatchSize) / 1048576.0:F1} MiB)"));
        if (!finished) return new TrainingRunOutcome(false, trainer.Step, session.CheckpointPath, []);
        var files = ModelExport.Write(outDir, info.Name ?? new DirectoryInfo(outDir).Name, trainer.Config, trainer.Ema.Model, trainer.Model,
            info.ClassNames, exportWeightsName, distilled?.Vae ?? info.Latent?.Vae, distilled);
        return new TrainingRunOutcome(true, trainer.Step, session.CheckpointPath, files);
    }
}
