using DiTServer.Core.Training;

namespace DiTServer.Api.Admin;

public sealed partial class TrainingJobs
{
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

        if (info.Distillation is { } distill)
        {
            // A distillation reads its teacher again (its trajectories are in the run folder): it must still be the served model's folder.
            if (Path.GetFullPath(distill.Teacher) != Path.GetFullPath(served.Manifest.Folder))
                throw new UnusableCheckpointException($"job {stopped.Id} distils {distill.Teacher}, which is not the served model's folder " +
                    $"({served.Manifest.Folder}); resume it with that model served", null);
            return ResumeWith(stopped, info, null, checkpoint, total);
        }
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
        try { return ResumeWith(stopped, info, images, checkpoint, total); }
        catch { images.Dispose(); throw; }
    }

    private TrainingJob ResumeWith(TrainingJob stopped, TrainingRunInfo info, ITrainingDataset? images, string checkpoint, long total)
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
}
