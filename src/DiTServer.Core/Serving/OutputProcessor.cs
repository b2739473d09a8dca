using System.Diagnostics;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Imaging;
using DiTServer.Core.Sampling;
using Microsoft.Extensions.Logging;

namespace DiTServer.Core.Serving;

/// <summary>Everything after the model: progress reports, previews and finished images PNG-encoded on the thread pool,
/// and each request's task completed (vLLM's output processor). The worker only hands it bytes, never tensors.</summary>
/// <remarks>Sinks and encoders that throw are logged and never reach the worker. Per request, deliveries keep their
/// order: previews in step order, the result after the last preview.</remarks>
public sealed class OutputProcessor(LoadedModel model, IServingObserver observer, ILogger logger)
{
    /// <summary>A run the runner has started: metrics, a log line, and progress step 0.</summary>
    public void Admitted(ScheduledRun run)
    {
        var request = run.Request;
        var p = request.Parameters;
        observer.Admitted(request.Age);
        using (logger.BeginScope(Tags(request)))
            logger.LogInformation("Admitted after {QueueWaitMs:F0} ms in the queue for {Client}: {Images} image(s) of class {Class}, {Steps} {Sampler} " +
                "steps, cfg {Cfg}, seed {Seed}",
                request.Age.TotalMilliseconds, request.Client, p.NumImages, p.ClassLabel,
                p.Sampling.Steps, p.Sampling.Sampler, p.Sampling.CfgScale, p.Sampling.Seed);
        Progress(run);
    }

    /// <summary>Tells the request's progress sink (if any) where it stands.</summary>
    public void Progress(ScheduledRun run)
    {
        if (run.Request.Progress is not { } sink) return;
        try { sink.Report(new GenerationProgress(run.StepsDone, run.TotalSteps)); }
        catch (Exception e)
        {
            using (logger.BeginScope(Tags(run.Request)))
                logger.LogWarning("Progress sink failed: {Error}", e.Message);
        }
    }

    /// <summary>Renders a preview with <paramref name="render"/> (the runner's small tensor work, on the calling worker
    /// thread), then PNG-encodes and delivers it after the run's earlier ones. A failed preview never fails the run.</summary>
    public void Preview(ScheduledRun run, Func<(byte[][] Hwc, int Side, int Channels)> render)
    {
        var request = run.Request;
        (byte[][] Hwc, int Side, int Channels) pixels;
        try { pixels = render(); }
        catch (Exception e)
        {
            using (logger.BeginScope(Tags(request)))
                logger.LogWarning("Preview at step {Step} failed: {Error}", run.StepsDone, e.Message);
            return;
        }
        var sink = request.Preview!.Sink;
        int step = run.StepsDone, total = run.TotalSteps;
        run.PreviewsDelivered = run.PreviewsDelivered.ContinueWith(_ =>
        {
            try
            {
                var pngs = pixels.Hwc.Select(hwc => PngWriter.Encode(hwc, pixels.Side, pixels.Side, pixels.Channels)).ToArray();
                sink.Report(new GenerationPreview(step, total, pixels.Side, pixels.Side, pngs));
            }
            catch (Exception e)
            {
                using (logger.BeginScope(Tags(request)))
                    logger.LogWarning("Preview at step {Step} could not be delivered: {Error}", step, e.Message);
            }
        }, TaskScheduler.Default);
    }

    /// <summary>Runs that finished this step, with their decoded pixels or why decoding failed (each fails alone).</summary>
    public void Finished(IReadOnlyList<ScheduledRun> done, IReadOnlyList<(byte[][]? Pixels, Exception? Error)> decoded)
    {
        for (int i = 0; i < done.Count; i++)
        {
            if (decoded[i].Pixels is { } images) Succeed(done[i], images);
            else End(EndedRequest.Failed(done[i], "decoding failed", decoded[i].Error!));
        }
    }

    /// <summary>Encodes a finished run's images (HWC bytes) after its previews, and completes its task.</summary>
    public void Succeed(ScheduledRun run, byte[][] hwc)
    {
        var request = run.Request;
        var queueWait = Stopwatch.GetElapsedTime(request.EnqueuedAt, run.AdmittedAt);
        _ = run.PreviewsDelivered.ContinueWith(_ => Encode(request, hwc, queueWait), TaskScheduler.Default);
    }

    private void Encode(GenerationRequest request, byte[][] hwc, TimeSpan queueWait)
    {
        try
        {
            var p = request.Parameters;
            var labels = p.Labels;
            var images = new GeneratedImage[hwc.Length];
            for (int i = 0; i < hwc.Length; i++)
                images[i] = ImagePipeline.EncodeImage(model, hwc[i], model.ImageSize, model.ImageSize, model.ImageChannels, labels, i, p.Sampling);
            observer.ImagesGenerated(images.Length);
            using (logger.BeginScope(Tags(request)))
                logger.LogInformation("Finished {Images} image(s) in {TotalMs:F0} ms", images.Length, request.Age.TotalMilliseconds);
            request.Succeed(new GenerationResult(images, queueWait, request.Age));
        }
        catch (Exception e)
        {
            observer.WorkerError();
            request.Fail(new GenerationException(GenerationFailure.Error, $"PNG encoding failed: {e.Message}", e));
        }
    }

    /// <summary>Completes a request that leaves without a result: cancelled (no error) or failed. Errors of the server's
    /// own making (not timeouts, not shutdown) are logged and counted.</summary>
    public void End(EndedRequest ended)
    {
        var (request, run, error) = ended;
        using (logger.BeginScope(Tags(request)))
        {
            if (error is null)
            {
                if (run is not null)
                    logger.LogInformation("Cancelled (client left or job deleted) after {Done}/{Total} steps; rows removed", run.StepsDone, run.TotalSteps);
                request.Cancel();
                return;
            }
            if (error.Failure == GenerationFailure.Timeout) logger.LogWarning("{Error}", error.Message);
            else if (error.Failure == GenerationFailure.Error)
            {
                logger.LogError(error.InnerException, "{Error}", error.Message);
                observer.WorkerError();
            }
            request.Fail(error);
        }
    }

    public static Dictionary<string, object> Tags(GenerationRequest r) => new() { ["RequestId"] = r.Id };
}
