using DiTServer.Core.Training;

namespace DiTServer.Api.Admin;

public sealed partial class TrainingJobs
{
    /// <summary>Lists the runs found under the output root (each folder with a checkpoint): finished ones (exported at
    /// their step count) as succeeded, the others as interrupted and resumable, unreadable ones as failed with the reason.</summary>
    /// <returns>How many runs were found.</returns>
    public int Recover()
    {
        if (!Directory.Exists(OutputRoot)) return 0;
        TrainingRunFolders.DeleteLeftoverCheckpoints(OutputRoot, logger);
        int found = 0;
        foreach (var folder in TrainingRunFolders.Under(OutputRoot))
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
}
