using DiTServer.Core.Pipeline;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Serving;
using DiTServer.Core.Training;
using Microsoft.Extensions.Options;
using static TorchSharp.torch;

namespace DiTServer.Api.Admin;

/// <summary>A checkpoint that exists but cannot be loaded (damaged, truncated, another format): 422 with the reason.</summary>
public sealed class UnusableCheckpointException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Runs admin training jobs, one at a time per device, each on its own thread; serving goes on meanwhile.</summary>
/// <remarks>
/// <para>A job is identified by its output folder (its id is a hash of the folder relative to <c>Training:OutputRoot</c>),
/// so a run keeps its id across restarts: at start every run folder under the output root with a checkpoint is listed,
/// with its last checkpoint step, and an interrupted one can be resumed through the API.</para>
/// <para>On shutdown (SIGTERM, <c>docker stop</c>) a running job is cancelled as soon as the host starts stopping; its
/// thread finishes the current step, writes the checkpoint atomically and disposes its tensors, and the host awaits that
/// within its shutdown timeout. The thread is a foreground thread as well: even past the timeout the runtime does not
/// unload libtorch under it (that was the SIGSEGV, exit 139, with no checkpoint written).</para>
/// </remarks>
public sealed class TrainingJobs(LoadedModel served, GenerationEngine engine, IOptions<TrainingApiOptions> options, ILogger<TrainingJobs> logger,
    TimeProvider clock) : IHostedLifecycleService, IDisposable
{
    /// <summary>Run folders are looked for this deep below the output root; a request's <c>output</c> may not be deeper
    /// (<see cref="TrainingJobRequestValidator.MaxOutputDepth"/>), so every run the API creates is listed after a restart.</summary>
    public const int MaxRunDepth = 8;

    private readonly ConcurrentDictionary<string, TrainingJob> jobs = new();
    private readonly object startGate = new();
    private volatile TrainingJob? running;

    public string DataRoot => Path.GetFullPath(options.Value.DataRoot);
    public string OutputRoot => Path.GetFullPath(options.Value.OutputRoot);

    public IReadOnlyList<TrainingJobStatus> List() => jobs.Values.Select(j => j.Status).OrderBy(s => s.StartedAt).ThenBy(s => s.Output).ToList();

    public TrainingJob? Find(string id) => jobs.TryGetValue(id, out var job) ? job : null;

    /// <summary>The stable id of the run in <paramref name="outputFolder"/>.</summary>
    public string IdOf(string outputFolder) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Relative(outputFolder))))[..12];

    private string Relative(string outputFolder) => Path.GetRelativePath(OutputRoot, outputFolder).Replace('\\', '/');

    /// <summary>Lists the runs found under the output root (each folder with a checkpoint): finished ones (exported at
    /// their step count) as succeeded, the others as interrupted and resumable, unreadable ones as failed with the reason.</summary>
    /// <returns>How many runs were found.</returns>
    public int Recover()
    {
        if (!Directory.Exists(OutputRoot)) return 0;
        DeleteLeftoverCheckpoints();
        int found = 0;
        foreach (var folder in RunFolders(OutputRoot, 0))
        {
            string id = IdOf(folder);
            if (jobs.ContainsKey(id)) continue;
            var checkpoint = Path.Combine(folder, TrainingSession.CheckpointFile);
            var since = new DateTimeOffset(File.GetLastWriteTimeUtc(checkpoint), TimeSpan.Zero);
            TrainingJob job;
            try
            {
                var info = TrainingCheckpoint.ReadInfo(checkpoint);
                bool exported = info.Step >= info.Options.Steps && File.Exists(Path.Combine(folder, "model.json"));
                job = new TrainingJob(id, folder, Relative(folder), info.Options.Steps, since);
                job.Update(s => s with
                {
                    State = exported ? TrainingJobState.Succeeded : TrainingJobState.Interrupted, Step = info.Step, LastCheckpoint = checkpoint,
                    ExportedModel = exported ? folder : null, FinishedAt = since,
                });
            }
            catch (InvalidDataException e)
            {
                job = new TrainingJob(id, folder, Relative(folder), 0, since);
                job.Update(s => s with { State = TrainingJobState.Failed, Error = $"checkpoint unreadable: {e.Message}", LastCheckpoint = checkpoint,
                    FinishedAt = since });
            }
            job.MarkFinished();
            jobs[id] = job;
            found++;
        }
        return found;
    }

    /// <summary>Every folder under <paramref name="folder"/> (itself included) down to <see cref="MaxRunDepth"/>, without
    /// following links (a linked folder may lead outside the root).</summary>
    private static IEnumerable<string> Folders(string folder, int depth)
    {
        yield return folder;
        if (depth >= MaxRunDepth) yield break;
        IEnumerable<string> children;
        try { children = Directory.EnumerateDirectories(folder).Order(StringComparer.Ordinal).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { yield break; }
        foreach (var child in children)
        {
            if (new DirectoryInfo(child).LinkTarget is not null) continue;
            foreach (var inner in Folders(child, depth + 1)) yield return inner;
        }
    }

    /// <summary>The folders with a checkpoint. A run folder's subfolders are searched too: a run in the output root itself
    /// (which older versions accepted as <c>"output": "."</c>) or one nested in another must not hide the others.</summary>
    private static IEnumerable<string> RunFolders(string folder, int depth) =>
        Folders(folder, depth).Where(f => File.Exists(Path.Combine(f, TrainingSession.CheckpointFile)));

    /// <summary>Deletes the <c>*.ckpt.tmp</c> files that a process killed inside a checkpoint write (SIGKILL, OOM killer)
    /// left in the run folders: the complete checkpoint beside one is still the run's, and nothing else would remove it.
    /// Runs once at start, before any job of this process writes.</summary>
    private void DeleteLeftoverCheckpoints()
    {
        var deleted = new List<string>();
        foreach (var folder in Folders(OutputRoot, 0))
        {
            IEnumerable<string> leftovers;
            try { leftovers = Directory.EnumerateFiles(folder, "*.ckpt.tmp").ToList(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            foreach (var file in leftovers)
            {
                try
                {
                    if (new FileInfo(file).LinkTarget is not null || !RegularFile.Is(file)) continue; // ours are regular files
                    File.Delete(file);
                    deleted.Add(Relative(file));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    logger.LogWarning("Could not delete the partial checkpoint {File} left by a killed process: {Error}", file, e.Message);
                }
            }
        }
        if (deleted.Count > 0)
            logger.LogInformation("Deleted {Count} partial checkpoint file(s) left by a killed training process: {Files}", deleted.Count,
                string.Join(", ", deleted));
    }

    /// <summary>Validates the request (paths, options, dataset, architecture, size limits), then trains on a new thread.</summary>
    /// <exception cref="ArgumentException">Bad request (message for the 400).</exception>
    /// <exception cref="InvalidOperationException">A job is already running (409).</exception>
    public TrainingJob Start(TrainingJobRequest request)
    {
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

    /// <summary>Continues a stopped run (interrupted by a restart, cancelled, or failed after a checkpoint) from its
    /// checkpoint: same weights, optimizer, RNG and options; <paramref name="steps"/> may raise the step count.</summary>
    /// <exception cref="ArgumentException">Bad step count (400).</exception>
    /// <exception cref="InvalidOperationException">Running, another job runs, no checkpoint, or nothing left to do (409).</exception>
    /// <exception cref="UnusableCheckpointException">The checkpoint or its dataset cannot be used (422).</exception>
    public TrainingJob Resume(TrainingJob stopped, long? steps)
    {
        if (!stopped.Finished.IsCompleted) throw new InvalidOperationException($"job {stopped.Id} is running");
        ThrowIfRunning();
        string checkpoint = Path.Combine(stopped.OutputFolder, TrainingSession.CheckpointFile);
        if (!File.Exists(checkpoint)) throw new InvalidOperationException($"job {stopped.Id} has no checkpoint to resume from");
        TrainingRunInfo info;
        try { info = TrainingCheckpoint.ReadInfo(checkpoint); }
        catch (InvalidDataException e) { throw new UnusableCheckpointException($"job {stopped.Id}'s checkpoint cannot be read: {e.Message}", e); }
        long total = steps ?? info.Options.Steps;
        if (total <= 0) throw new ArgumentException("steps must be positive");
        if (total <= info.Step)
            throw new InvalidOperationException($"job {stopped.Id} is at step {info.Step} of {info.Options.Steps}; pass a larger \"steps\" to train on");
        info = info with { Options = info.Options with { Steps = total } };

        // The recorded dataset must still be under the data root: the checkpoint is a file, not a trusted request.
        string dataset;
        try
        {
            dataset = ConfinedPath.Resolve(DataRoot, info.Dataset ?? "", "the run's dataset");
            if (Directory.Exists(dataset)) ConfinedPath.RequireContentsInside(DataRoot, dataset, "the run's dataset");
        }
        catch (ArgumentException e) { throw new UnusableCheckpointException($"job {stopped.Id} cannot be resumed here: {e.Message}", e); }
        // Read outside the start lock, as for a new job.
        ITrainingDataset images;
        try { images = TrainingRun.OpenDataset(info with { Dataset = dataset }, Scan()); }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException or TimeoutException)
        {
            throw new UnusableCheckpointException($"job {stopped.Id}'s dataset cannot be read: {e.Message}", e);
        }
        try
        {
            lock (startGate)
            {
                if (!stopped.Finished.IsCompleted || (Find(stopped.Id) is { } current && !current.Finished.IsCompleted))
                    throw new InvalidOperationException($"job {stopped.Id} is running");
                ThrowIfRunning();
                var job = new TrainingJob(stopped.Id, stopped.OutputFolder, stopped.Status.Output ?? Relative(stopped.OutputFolder), total,
                    DateTimeOffset.UtcNow);
                job.Update(s => s with { Step = info.Step, LastCheckpoint = checkpoint });
                Launch(job, info, images, null, resume: true);
                return job;
            }
        }
        catch { images.Dispose(); throw; }
    }

    private void ThrowIfRunning()
    {
        if (running is not null && !running.Finished.IsCompleted)
            throw new InvalidOperationException($"training job {running.Id} is still running on this device; cancel it or wait");
    }

    /// <summary>Registers the job and starts its thread; caller holds <see cref="startGate"/> (and reads nothing under it).</summary>
    private void Launch(TrainingJob job, TrainingRunInfo info, ITrainingDataset images, Dictionary<string, Tensor>? initial, bool resume)
    {
        var thread = new Thread(() => Run(job, info, images, initial, resume)) { IsBackground = false, Name = $"dit-train-{job.Id}" };
        jobs[job.Id] = job;
        running = job;
        thread.Start();
    }

    private void Run(TrainingJob job, TrainingRunInfo info, ITrainingDataset images, Dictionary<string, Tensor>? initial, bool resume)
    {
        // The final state is published only after every tensor of the job is disposed (finally below): a client that
        // sees "Cancelled" or "Succeeded" can start the next job at once without meeting a 409.
        Func<TrainingJobStatus, TrainingJobStatus> final;
        try
        {
            // Encoding to latents runs here, on the job's thread: it can take minutes, and the request has been answered.
            var outcome = TrainingRun.Execute(info, job.OutputFolder, images, resume, initial, job.Cancel.Token,
                p => job.Update(s => s with
                {
                    Step = p.Step, Loss = p.RecentLoss, StepsPerSecond = p.StepsPerSecond, EtaSeconds = p.Eta.TotalSeconds,
                    LastCheckpoint = p.LastCheckpoint ?? s.LastCheckpoint,
                }),
                line => logger.LogInformation("Training job {Job}: {Line}", job.Id, line),
                started: (trainer, i) => logger.LogInformation("Training job {Job} {Verb}: steps {From} to {Steps} into {Output}",
                    job.Id, resume ? "resumed" : "started", trainer.Step, i.Options.Steps, job.OutputFolder));
            if (!outcome.Finished)
            {
                final = s => s with { State = TrainingJobState.Cancelled, Step = outcome.Step, LastCheckpoint = outcome.CheckpointPath,
                    FinishedAt = DateTimeOffset.UtcNow };
                logger.LogInformation("Training job {Job} stopped at step {Step}; checkpoint {Checkpoint} kept (resume with POST " +
                    "/v1/admin/training/jobs/{Job}/resume)",
                    job.Id, outcome.Step, outcome.CheckpointPath, job.Id);
            }
            else
            {
                final = s => s with
                {
                    State = TrainingJobState.Succeeded, Step = outcome.Step, LastCheckpoint = outcome.CheckpointPath,
                    ExportedModel = job.OutputFolder, FinishedAt = DateTimeOffset.UtcNow,
                };
                logger.LogInformation("Training job {Job} finished {Steps} steps", job.Id, outcome.Step);
            }
        }
        catch (OperationCanceledException)
        {
            // Cancelled before the first step (while encoding latents): nothing to checkpoint yet.
            final = s => s with { State = TrainingJobState.Cancelled, FinishedAt = DateTimeOffset.UtcNow };
        }
        catch (Exception e)
        {
            final = s => s with { State = TrainingJobState.Failed, Error = e.Message, FinishedAt = DateTimeOffset.UtcNow };
            logger.LogError("Training job {Job} failed: {Error}", job.Id, e.Message);
        }
        finally
        {
            images.Dispose();
            if (initial is not null) foreach (var t in initial.Values) t.Dispose();
        }
        job.Update(final);
        job.MarkFinished(); // only now: every tensor of the job is gone, so the host may dispose the rest and exit
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

    /// <summary>Hot-swaps the served weights to the job's latest checkpoint EMA (same architecture only). On any
    /// failure the previous weights keep serving.</summary>
    /// <exception cref="InvalidOperationException">No checkpoint, or an architecture the served model cannot take (409).</exception>
    /// <exception cref="UnusableCheckpointException">The checkpoint cannot be loaded (422).</exception>
    /// <exception cref="TimeoutException">Running requests did not finish within <c>Training:ActivationTimeout</c> (503).</exception>
    public async Task<long> ActivateAsync(TrainingJob job, CancellationToken cancel)
    {
        string ckpt = Path.Combine(job.OutputFolder, TrainingSession.CheckpointFile);
        if (!File.Exists(ckpt)) throw new InvalidOperationException($"job {job.Id} has no checkpoint (none written yet, or it was removed)");
        TrainingRunInfo info;
        DiT model, ema;
        try { (info, model, ema) = TrainingCheckpoint.LoadModels(ckpt); }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            // Whatever a damaged file makes TorchSharp throw (InvalidDataException, ArgumentException, a native error's
            // ExternalException): the file is the problem, not the server.
            throw new UnusableCheckpointException($"job {job.Id}'s checkpoint cannot be loaded: {e.Message}", e);
        }
        model.Dispose();
        Task? swap = null;
        try
        {
            if (info.Config != served.Config)
                throw new InvalidOperationException(
                    $"job {job.Id} trains a different architecture than the served model; serve its export by restarting with DiT__Model={job.OutputFolder}");
            if (info.Latent?.Vae != served.Manifest.VaePath)
                throw new InvalidOperationException(
                    $"job {job.Id} trains in the space of {(info.Latent is null ? "pixels" : $"the VAE at {info.Latent.Vae}")} but the served model decodes " +
                        $"with {served.Manifest.VaePath ?? "no VAE"}; serve its export by restarting with DiT__Model={job.OutputFolder}");
            var weights = ema.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
            swap = engine.ReplaceWeightsAsync(weights, $"the EMA of training job {job.Id} at step {info.Step}");
            try { await swap.WaitAsync(options.Value.ActivationTimeout, cancel); }
            catch (StateDictMismatchException e) { throw new InvalidOperationException(e.Message, e); }
            return info.Step;
        }
        finally
        {
            // The worker copies from these tensors when the swap runs; it may still be pending after a timeout or a
            // client that left, so they are disposed only once the swap is over, never under the worker.
            if (swap is null || swap.IsCompleted) ema.Dispose();
            else _ = swap.ContinueWith(_ => ema.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Runs before Kestrel drains its connections: the job starts writing its checkpoint at once instead of
    /// training on while the host waits for open requests.</summary>
    public Task StoppingAsync(CancellationToken cancellationToken)
    {
        foreach (var job in jobs.Values.Where(j => !j.Finished.IsCompleted))
        {
            logger.LogInformation("Shutting down: training job {Job} stops after its current step and writes its checkpoint", job.Id);
            job.Cancel.Cancel();
        }
        return Task.CompletedTask;
    }

    /// <summary>Awaits every job's thread within the host's shutdown timeout (<paramref name="cancellationToken"/>).</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        foreach (var job in jobs.Values) job.Cancel.Cancel();
        var threads = Task.WhenAll(jobs.Values.Select(j => j.Finished));
        try { await threads.WaitAsync(cancellationToken); }
        catch (OperationCanceledException)
        {
            // The thread is a foreground thread: the process still waits for it before it exits.
            logger.LogError("Training job(s) {Jobs} did not stop within the host's shutdown timeout; the process exits when their step and checkpoint are done",
                string.Join(", ", jobs.Values.Where(j => !j.Finished.IsCompleted).Select(j => j.Id)));
        }
    }

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        foreach (var job in jobs.Values) job.Cancel.Cancel();
    }
}
