using System.Collections.Concurrent;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Serving;
using DiTServer.Core.Training;
using Microsoft.Extensions.Options;
using static TorchSharp.torch;

namespace DiTServer.Api.Admin;

/// <summary>Runs admin training jobs, one at a time per device, each on its own thread; serving goes on meanwhile.</summary>
/// <remarks>On shutdown (SIGTERM, <c>docker stop</c>) a running job is cancelled as soon as the host starts stopping; its
/// thread finishes the current step, writes the checkpoint atomically and disposes its tensors, and the host awaits that
/// within its shutdown timeout. The thread is a foreground thread as well: even past the timeout the runtime does not
/// unload libtorch under it (that was the SIGSEGV, exit 139, with no checkpoint written).</remarks>
public sealed class TrainingJobs(LoadedModel served, GenerationEngine engine, IOptions<TrainingApiOptions> options, ILogger<TrainingJobs> logger)
    : IHostedLifecycleService, IDisposable
{
    private readonly ConcurrentDictionary<string, TrainingJob> jobs = new();
    private readonly object startGate = new();
    private TrainingJob? running;

    public string DataRoot => Path.GetFullPath(options.Value.DataRoot);
    public string OutputRoot => Path.GetFullPath(options.Value.OutputRoot);

    public IReadOnlyList<TrainingJobStatus> List() => jobs.Values.Select(j => j.Status).OrderBy(s => s.StartedAt).ToList();

    public TrainingJob? Find(string id) => jobs.TryGetValue(id, out var job) ? job : null;

    /// <summary>Validates the request (paths, options, dataset, architecture), then trains on a new thread.</summary>
    /// <exception cref="ArgumentException">Bad request (message for the 400).</exception>
    /// <exception cref="InvalidOperationException">A job is already running (409).</exception>
    public TrainingJob Start(TrainingJobRequest request)
    {
        string datasetFolder = ConfinedPath.Resolve(DataRoot, request.Dataset ?? throw new ArgumentException("'dataset' is required"), "dataset");
        string output = ConfinedPath.Resolve(OutputRoot, request.Output ?? throw new ArgumentException("'output' is required"), "output");
        if (!Directory.Exists(datasetFolder)) throw new ArgumentException($"dataset '{request.Dataset}' does not exist under the data root");
        if (File.Exists(Path.Combine(output, TrainingSession.CheckpointFile)))
            throw new ArgumentException($"output '{request.Output}' already holds a training run; choose a new folder");
        var trainingOptions = new TrainingOptions
        {
            Steps = request.Steps, BatchSize = request.BatchSize, LearningRate = request.LearningRate, EmaDecay = request.EmaDecay,
            EmaWarmup = request.EmaWarmup, Seed = request.Seed, LogEvery = request.LogEvery, CheckpointEvery = request.CheckpointEvery,
        };
        trainingOptions.Validate();

        lock (startGate)
        {
            if (running is not null && running.Status.State == TrainingJobState.Running)
                throw new InvalidOperationException($"training job {running.Id} is still running on this device; cancel it or wait");
            IdxDataset dataset;
            try { dataset = IdxDataset.FromFolder(datasetFolder); }
            catch (Exception e) when (e is InvalidDataException or FileNotFoundException or IOException)
            {
                throw new ArgumentException($"dataset '{request.Dataset}' cannot be read: {e.Message}");
            }
            try
            {
                var (latent, input) = LatentInput(request, dataset);
                var (config, initial) = Architecture(request, dataset, input);
                var info = new TrainingRunInfo
                {
                    Name = request.Name ?? new DirectoryInfo(output).Name,
                    Dataset = datasetFolder,
                    Latent = latent,
                    ClassNames = request.ClassNames ?? (request.InitFrom == "served" ? Enumerable.Range(0, served.Classes.Count).Select(i => served.Classes[i]).ToList() : null),
                    Options = trainingOptions,
                    Config = config,
                };
                if (info.ClassNames is { } names && names.Count != config.NumClasses)
                    throw new ArgumentException($"class_names has {names.Count} names but the model has {config.NumClasses} classes");
                var job = new TrainingJob(Guid.NewGuid().ToString("n")[..12], output, request.Steps);
                var thread = new Thread(() => Run(job, info, dataset, initial)) { IsBackground = false, Name = $"dit-train-{job.Id}" };
                jobs[job.Id] = job;
                running = job;
                thread.Start();
                return job;
            }
            catch
            {
                dataset.Dispose();
                throw;
            }
        }
    }

    private void Run(TrainingJob job, TrainingRunInfo info, IdxDataset images, Dictionary<string, Tensor>? initial)
    {
        LatentDataset? latents = null;
        try
        {
            // Encoding runs here, on the job's thread: it can take minutes, and the request has already been answered.
            if (info.Latent is { } latent)
                latents = LatentCache.LoadOrEncode(Path.Combine(job.OutputFolder, LatentCache.FileName), images, latent,
                    line => logger.LogInformation("Training job {Job}: {Line}", job.Id, line));
            using var trainer = new Trainer(info.Config, info.Options, (ITrainingDataset?)latents ?? images);
            if (initial is not null)
            {
                StateDict.LoadStrict(trainer.Model, initial, "init_from");
                StateDict.LoadStrict(trainer.Ema.Model, initial, "init_from");
            }
            var session = new TrainingSession(trainer, info, job.OutputFolder);
            logger.LogInformation("Training job {Job} started: {Steps} steps into {Output}", job.Id, info.Options.Steps, job.OutputFolder);
            bool finished = session.Run(job.Cancel.Token, p => job.Update(s => s with
            {
                Step = p.Step, Loss = p.RecentLoss, StepsPerSecond = p.StepsPerSecond, EtaSeconds = p.Eta.TotalSeconds,
                LastCheckpoint = p.LastCheckpoint ?? s.LastCheckpoint,
            }));
            if (!finished)
            {
                job.Update(s => s with { State = TrainingJobState.Cancelled, Step = trainer.Step, LastCheckpoint = session.CheckpointPath, FinishedAt = DateTimeOffset.UtcNow });
                logger.LogInformation("Training job {Job} cancelled at step {Step}; checkpoint kept", job.Id, trainer.Step);
                return;
            }
            ModelExport.Write(job.OutputFolder, info.Name!, info.Config, trainer.Ema.Model, trainer.Model, info.ClassNames, vae: info.Latent?.Vae);
            job.Update(s => s with
            {
                State = TrainingJobState.Succeeded, Step = trainer.Step, LastCheckpoint = session.CheckpointPath,
                ExportedModel = job.OutputFolder, FinishedAt = DateTimeOffset.UtcNow,
            });
            logger.LogInformation("Training job {Job} finished {Steps} steps", job.Id, trainer.Step);
        }
        catch (Exception e)
        {
            job.Update(s => s with { State = TrainingJobState.Failed, Error = e.Message, FinishedAt = DateTimeOffset.UtcNow });
            logger.LogError("Training job {Job} failed: {Error}", job.Id, e.Message);
        }
        finally
        {
            latents?.Dispose();
            images.Dispose();
            if (initial is not null) foreach (var t in initial.Values) t.Dispose();
            job.MarkFinished(); // only now: every tensor of the job is gone, so the host may dispose the rest and exit
        }
    }

    /// <summary>The job's latent settings (null in pixel space) and the model input they make of the dataset's images.</summary>
    /// <remarks>A request's <c>vae</c> is confined to the data root like the dataset; the served model's own VAE was
    /// chosen by the operator and needs no confinement.</remarks>
    private (LatentSettings? Latent, (int Side, int Channels) Input) LatentInput(TrainingJobRequest request, IdxDataset dataset)
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

    /// <summary>The job's architecture: the served model's for "served" (its weights as the start), else the spec's.</summary>
    private (DiTConfig Config, Dictionary<string, Tensor>? Initial) Architecture(TrainingJobRequest request, IdxDataset dataset, (int Side, int Channels) input)
    {
        if (request.InitFrom is { } from)
        {
            if (from != "served") throw new ArgumentException("init_from must be \"served\" (fine-tune the served model) or absent");
            var config = served.Config;
            if (input.Side != config.InputSize || input.Channels != config.InChannels)
                throw new ArgumentException($"the dataset's {dataset.Channels}×{dataset.ImageSize}² images make {input.Channels}×{input.Side}² model inputs, which do not fit the served model's {config.InChannels}×{config.InputSize}² input");
            return (config, CheckpointFile.LoadStateDict(served.Manifest.WeightsPath));
        }
        var spec = request.Model ?? new TrainingModelSpec();
        var fresh = new DiTConfig
        {
            HiddenSize = spec.HiddenSize, Depth = spec.Depth, NumHeads = spec.NumHeads, PatchSize = spec.PatchSize,
            Conditioning = ConditioningNames.Parse(spec.Conditioning ?? "adaLN-Zero"), LearnSigma = spec.LearnSigma,
            ClassDropoutProb = request.ClassDropoutProb, InputSize = input.Side, InChannels = input.Channels,
            NumClasses = Math.Max(dataset.NumClasses, request.ClassNames?.Count ?? 0),
        };
        fresh.Validate();
        return (fresh, null);
    }

    /// <summary>Hot-swaps the served weights to the job's latest checkpoint EMA (same architecture only).</summary>
    /// <exception cref="InvalidOperationException">No checkpoint yet, or an architecture the served model cannot take (409).</exception>
    public async Task<long> ActivateAsync(TrainingJob job, CancellationToken cancel)
    {
        string ckpt = Path.Combine(job.OutputFolder, TrainingSession.CheckpointFile);
        if (!File.Exists(ckpt)) throw new InvalidOperationException($"job {job.Id} has no checkpoint yet");
        var (info, model, ema) = TrainingCheckpoint.LoadModels(ckpt);
        using (model)
        using (ema)
        {
            if (info.Config != served.Config)
                throw new InvalidOperationException(
                    $"job {job.Id} trains a different architecture than the served model; serve its export by restarting with DiT__Model={job.OutputFolder}");
            if (info.Latent?.Vae != served.Manifest.VaePath)
                throw new InvalidOperationException(
                    $"job {job.Id} trains in the space of {(info.Latent is null ? "pixels" : $"the VAE at {info.Latent.Vae}")} but the served model decodes with {served.Manifest.VaePath ?? "no VAE"}; serve its export by restarting with DiT__Model={job.OutputFolder}");
            var weights = ema.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
            var swap = engine.ReplaceWeightsAsync(weights, $"the EMA of training job {job.Id} at step {info.Step}");
            await swap.WaitAsync(options.Value.ActivationTimeout, cancel);
            return info.Step;
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
