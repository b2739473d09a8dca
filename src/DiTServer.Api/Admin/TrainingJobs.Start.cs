using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Api.Admin;

public sealed partial class TrainingJobs
{
    /// <summary>Validates the request (paths, options, dataset, architecture, size limits), then trains on a new thread.</summary>
    /// <exception cref="ArgumentException">Bad request (message for the 400).</exception>
    /// <exception cref="InvalidOperationException">A job is already running (409).</exception>
    public TrainingJob Start(TrainingJobRequest request)
    {
        if (request.DistillFrom is not null) return StartDistillation(request);
        string datasetFolder = ConfinedPath.Resolve(DataRoot, request.Dataset ?? throw new ArgumentException("'dataset' is required"), "dataset");
        string output = ConfinedPath.Resolve(OutputRoot, request.Output ?? throw new ArgumentException("'output' is required"), "output");
        if (!Directory.Exists(datasetFolder)) throw new ArgumentException($"dataset '{request.Dataset}' does not exist under the data root");
        RequireNoRun(request, output);
        var trainingOptions = request.Options();
        trainingOptions.Validate();

        // The dataset is read, and the model sized, outside the start lock: a slow or hostile folder must not keep every
        // other start, resume or 409 waiting. The lock is taken only to register the job (checked again there).
        ThrowIfRunning();
        ITrainingDataset dataset = OpenDataset(request, datasetFolder);
        Dictionary<string, Tensor>? initial = null;
        try
        {
            var (latent, input) = LatentInput(request, dataset);
            var config = Architecture(request, dataset, input);
            // Before any weight is allocated: a model or batch too large for this server is a 400, not an OOM.
            TrainingFootprint.Check(config, trainingOptions.BatchSize, options.Value.MaxParameters, options.Value.MaxMemoryBytes);
            if (request.InitFrom == "served") initial = CheckpointFile.LoadStateDict(served.Manifest.WeightsPath);
            var info = new TrainingRunInfo
            {
                Name = request.Name ?? new DirectoryInfo(output).Name,
                Dataset = datasetFolder,
                DatasetKind = dataset is ImageFolderDataset ? "image-folder" : "idx",
                ImageSize = dataset is ImageFolderDataset ? dataset.ImageSize : null,
                Channels = dataset is ImageFolderDataset ? dataset.Channels : null,
                Latent = latent,
                ClassNames = request.ClassNames
                    ?? (request.InitFrom == "served" ? Enumerable.Range(0, served.Classes.Count).Select(i => served.Classes[i]).ToList()
                    : (dataset as ImageFolderDataset)?.ClassNames),
                Options = trainingOptions,
                Config = config,
            };
            if (info.ClassNames is { } names && names.Count != config.NumClasses)
                throw new ArgumentException($"class_names has {names.Count} names but the model has {config.NumClasses} classes");
            lock (startGate)
            {
                ThrowIfRunning();
                RequireNoRun(request, output); // again: another start may have written one while this one read its dataset
                var job = new TrainingJob(IdOf(output), output, Relative(output), trainingOptions.Steps, DateTimeOffset.UtcNow);
                Launch(job, info, dataset, initial, resume: false);
                return job;
            }
        }
        catch
        {
            dataset.Dispose();
            if (initial is not null) foreach (var t in initial.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>A distillation of the served model (<c>distill_from: "served"</c>): no dataset; the bounds are the
    /// student's training footprint plus its teacher trajectories, checked before the 202.</summary>
    private TrainingJob StartDistillation(TrainingJobRequest request)
    {
        if (request.DistillFrom != "served") throw new ArgumentException("distill_from must be \"served\" (distil the served model) or absent");
        string output = ConfinedPath.Resolve(OutputRoot, request.Output ?? throw new ArgumentException("'output' is required"), "output");
        RequireNoRun(request, output);
        if (served.Config.GuidanceConditioned)
            throw new ArgumentException("the served model is itself a distilled student; distil from its teacher (serve the teacher first)");
        if (served.Config.ClassDropoutProb <= 0)
            throw new ArgumentException("the served model has no null class (trained without label dropout): there is no guidance to distil");
        var trainingOptions = request.Options();
        trainingOptions.Validate();
        var settings = request.Distillation(served.Manifest.Folder);
        settings.Validate();
        var config = served.Config with { GuidanceConditioned = true };
        TrainingFootprint.Check(config, trainingOptions.BatchSize, options.Value.MaxParameters, options.Value.MaxMemoryBytes);
        double bank = TeacherTrajectories.Bytes(config, settings), total = bank + TrainingFootprint.TrainingBytes(config, trainingOptions.BatchSize);
        if (total > options.Value.MaxMemoryBytes)
            throw new ArgumentException($"distilling with batch_size {trainingOptions.BatchSize} from {settings.Trajectories} trajectories needs about " +
                $"{total / (1 << 30):F1} GiB ({bank / (1 << 30):F1} GiB of them trajectories); this server allows " +
                $"{options.Value.MaxMemoryBytes / (1 << 30):F1} GiB (Training:MaxMemoryBytes); lower trajectories, teacher_steps or batch_size");
        var info = new TrainingRunInfo
        {
            Name = request.Name ?? new DirectoryInfo(output).Name, Options = trainingOptions, Config = config, Distillation = settings,
        };
        lock (startGate)
        {
            ThrowIfRunning();
            RequireNoRun(request, output);
            var job = new TrainingJob(IdOf(output), output, Relative(output), trainingOptions.Steps, DateTimeOffset.UtcNow);
            Launch(job, info, null, null, resume: false);
            return job;
        }
    }

    private void RequireNoRun(TrainingJobRequest request, string output)
    {
        if (File.Exists(Path.Combine(output, TrainingSession.CheckpointFile)))
            throw new ArgumentException($"output '{request.Output}' already holds a training run (job {IdOf(output)}); resume it with POST " +
                $"/v1/admin/training/jobs/{IdOf(output)}/resume or choose a new folder");
    }

    /// <summary>The limits of reading a dataset under the data root, its clock started now.</summary>
    private DatasetScan Scan() => new(options.Value.MaxImagePixels, options.Value.DatasetScanTimeout, clock);

    /// <summary>Largest <c>image_size</c> of a class-subfolder dataset: every image is held decoded at that size.</summary>
    public const int MaxImageSize = 1024;

    /// <summary>The request's dataset: IDX files, or one subfolder of images per class (with <c>image_size</c>).</summary>
    private ITrainingDataset OpenDataset(TrainingJobRequest request, string folder)
    {
        ConfinedPath.RequireContentsInside(DataRoot, folder, "dataset");
        bool idx = Directory.EnumerateFiles(folder, "train-images-idx3-ubyte*").Any();
        if (!idx && request.ImageSize is null)
            throw new ArgumentException($"dataset '{request.Dataset}' holds no train-*-ubyte files; for a folder of class subfolders give image_size");
        if (idx && (request.ImageSize is not null || request.Channels is not null))
            throw new ArgumentException($"dataset '{request.Dataset}' is an IDX dataset: its images have their own size; leave out image_size and channels");
        if (request.ImageSize is < 1 or > MaxImageSize) throw new ArgumentException($"image_size must be in 1..{MaxImageSize}");
        if (request.Channels is not (null or 1 or 3)) throw new ArgumentException("channels must be 1 or 3");
        try
        {
            return TrainingRun.OpenDataset(idx ? "idx" : "image-folder", folder, request.ImageSize, request.Channels, scan: Scan());
        }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or IOException)
        {
            throw new ArgumentException($"dataset '{request.Dataset}' cannot be read: {e.Message}");
        }
        catch (TimeoutException e)
        {
            throw new ArgumentException($"dataset '{request.Dataset}' cannot be read within Training:DatasetScanTimeout: {e.Message}");
        }
    }

    /// <summary>The job's latent settings (null in pixel space) and the model input they make of the dataset's images.</summary>
    /// <remarks>A request's <c>vae</c> is confined to the data root like the dataset; the served model's own VAE was
    /// chosen by the operator and needs no confinement.</remarks>
    private (LatentSettings? Latent, (int Side, int Channels) Input) LatentInput(TrainingJobRequest request, ITrainingDataset dataset)
    {
        string? folder;
        if (request.InitFrom == "served")
        {
            if (request.Vae is not null)
                throw new ArgumentException("with init_from \"served\" the served model's own VAE is used; leave out 'vae'");
            folder = served.Manifest.VaePath;
        }
        else if (request.Vae is { } vae)
        {
            folder = ConfinedPath.Resolve(DataRoot, vae, "vae");
            if (!Directory.Exists(folder)) throw new ArgumentException($"vae '{vae}' does not exist under the data root");
        }
        else folder = null;
        if (folder is null) return (null, (dataset.ImageSize, dataset.Channels));
        try
        {
            var (settings, config) = LatentSettings.ForFolder(folder);
            return (settings, LatentShape.For(config, dataset.ImageSize, dataset.Channels));
        }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException)
        {
            throw new ArgumentException($"vae '{request.Vae ?? folder}' cannot be used: {e.Message}");
        }
    }

    /// <summary>The job's architecture: the served model's for "served" (its weights are the start), else the spec's.</summary>
    private DiTConfig Architecture(TrainingJobRequest request, ITrainingDataset dataset, (int Side, int Channels) input)
    {
        if (request.InitFrom is { } from)
        {
            if (from != "served") throw new ArgumentException("init_from must be \"served\" (fine-tune the served model) or absent");
            var config = served.Config;
            if (input.Side != config.InputSize || input.Channels != config.InChannels)
                throw new ArgumentException($"the dataset's {dataset.Channels}×{dataset.ImageSize}² images make {input.Channels}×{input.Side}² model " +
                    $"inputs, which do not fit the served model's {config.InChannels}×{config.InputSize}² input");
            return config;
        }
        var spec = request.Model ?? new TrainingModelSpec();
        var fresh = new DiTConfig
        {
            HiddenSize = spec.HiddenSize, Depth = spec.Depth, NumHeads = spec.NumHeads, PatchSize = spec.PatchSize,
            Conditioning = ConditioningNames.Parse(spec.Conditioning ?? "adaLN-Zero"), LearnSigma = spec.LearnSigma,
            ClassDropoutProb = request.EffectiveClassDropoutProb(), InputSize = input.Side, InChannels = input.Channels,
            NumClasses = Math.Max(dataset.NumClasses, request.ClassNames?.Count ?? 0),
        };
        fresh.Validate();
        return fresh;
    }
}
