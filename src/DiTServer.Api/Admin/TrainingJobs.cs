using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Api.Admin;

/// <summary>Runs admin training jobs, one at a time per device, each on its own thread; serving goes on meanwhile.</summary>
/// <remarks>
/// <para>One concept per file: the registry and host lifecycle here; <c>TrainingJobs.Recover.cs</c> lists the runs found on
/// disk, <c>TrainingJobs.Start.cs</c> starts a new job, <c>TrainingJobs.Resume.cs</c> continues a stopped one,
/// <c>TrainingJobs.Run.cs</c> is a job's thread and <c>TrainingJobs.Activate.cs</c> serves a job's weights.</para>
/// <para>A job is identified by its output folder (its id is a hash of the folder relative to <c>Training:OutputRoot</c>),
/// so a run keeps its id across restarts: at start every run folder under the output root with a checkpoint is listed,
/// with its last checkpoint step, and an interrupted one can be resumed through the API.</para>
/// <para>On shutdown (SIGTERM, <c>docker stop</c>) a running job is cancelled as soon as the host starts stopping; its
/// thread finishes the current step, writes the checkpoint atomically and disposes its tensors, and the host awaits that
/// within its shutdown timeout. The thread is a foreground thread as well: even past the timeout the runtime does not
/// unload libtorch under it (that was the SIGSEGV, exit 139, with no checkpoint written).</para>
/// </remarks>
public sealed partial class TrainingJobs(LoadedModel served, GenerationEngine engine, IOptions<TrainingApiOptions> options, ILogger<TrainingJobs> logger,
    TimeProvider clock) : IHostedLifecycleService, IDisposable
{
    /// <summary>How deep run folders are looked for below the output root (<see cref="TrainingRunFolders.MaxDepth"/>).</summary>
    public const int MaxRunDepth = TrainingRunFolders.MaxDepth;

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

    private void ThrowIfRunning()
    {
        if (running is not null && !running.Finished.IsCompleted)
            throw new InvalidOperationException($"training job {running.Id} is still running on this device; cancel it or wait");
    }

    /// <summary>Registers the job and starts its thread; caller holds <see cref="startGate"/> (and reads nothing under it).</summary>
    private void Launch(TrainingJob job, TrainingRunInfo info, ITrainingDataset? images, Dictionary<string, Tensor>? initial, bool resume)
    {
        var thread = new Thread(() => Run(job, info, images, initial, resume)) { IsBackground = false, Name = $"dit-train-{job.Id}" };
        jobs[job.Id] = job;
        running = job;
        thread.Start();
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
