using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Training;

namespace DiTServer.Api.Admin;

public sealed partial class TrainingJobs
{
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
}
