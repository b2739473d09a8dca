using DiTServer.Core.Training;
using static TorchSharp.torch;

namespace DiTServer.Api.Admin;

public sealed partial class TrainingJobs
{
    private void Run(TrainingJob job, TrainingRunInfo info, ITrainingDataset? images, Dictionary<string, Tensor>? initial, bool resume)
    {
        // The final state is published only after every tensor of the job is disposed (finally below): a client that
        // sees "Cancelled" or "Succeeded" can start the next job at once without meeting a 409.
        Func<TrainingJobStatus, TrainingJobStatus> final;
        try
        {
            // Encoding to latents (or a distillation's teacher trajectories) runs here, on the job's thread: it can take
            // minutes, and the request has been answered.
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
            images?.Dispose();
            if (initial is not null) foreach (var t in initial.Values) t.Dispose();
        }
        job.Update(final);
        job.MarkFinished(); // only now: every tensor of the job is gone, so the host may dispose the rest and exit
    }
}
