using DiTServer.Core.Pipeline;
using System.Threading.Channels;
using DiTServer.Core.Imaging;
using Microsoft.Extensions.Logging;

namespace DiTServer.Core.Serving;

/// <summary>Everything after the model (vLLM's output processor), off the worker thread: log lines and metrics of
/// admission, progress reports, previews and finished images PNG-encoded, and each request's task completed.</summary>
/// <remarks>The worker only posts what happened, as bytes and numbers, to this processor's channel and goes on with the
/// next step; one consumer task handles the posts in order, so each request's deliveries keep their order (progress
/// and previews in step order, the result last). Sinks and encoders that throw are logged and never reach the worker.</remarks>
public sealed class OutputProcessor
{
    private readonly LoadedModel model;
    private readonly IServingObserver observer;
    private readonly ILogger logger;
    private readonly TimeProvider time;
    private readonly Channel<Action> posts = Channel.CreateUnbounded<Action>(new UnboundedChannelOptions { SingleReader = true });

    public OutputProcessor(LoadedModel model, IServingObserver observer, ILogger logger, TimeProvider time)
    {
        this.model = model;
        this.observer = observer;
        this.logger = logger;
        this.time = time;
        Drained = Task.Run(Consume);
    }

    /// <summary>Completes once <see cref="Complete"/> was called and every post before it has been handled.</summary>
    public Task Drained { get; }

    /// <summary>No more posts will come (the worker loop ended).</summary>
    public void Complete() => posts.Writer.TryComplete();

    private async Task Consume()
    {
        await foreach (var post in posts.Reader.ReadAllAsync())
        {
            try { post(); }
            catch (Exception e) { logger.LogError(e, "Output processing failed"); }
        }
    }

    private void Post(Action action)
    {
        // Unbounded: the worker never waits for encoding. After Complete (the loop's last answers) it runs inline.
        if (!posts.Writer.TryWrite(action)) action();
    }

    /// <summary>A run the runner has started: metrics, a log line, and progress step 0.</summary>
    public void Admitted(ScheduledRun run)
    {
        var request = run.Request;
        var p = request.Parameters;
        var queueWait = run.QueueWait;
        Post(() =>
        {
            observer.Admitted(queueWait);
            using (logger.BeginScope(Tags(request)))
                logger.LogInformation("Admitted after {QueueWaitMs:F0} ms in the queue for {Client}: {Images} image(s) of class {Class}, {Steps} " +
                    "{Sampler} steps, cfg {Cfg}, seed {Seed}",
                    queueWait.TotalMilliseconds, request.Client, p.NumImages, p.ClassLabel, p.Sampling.Steps, p.Sampling.Sampler, p.Sampling.CfgScale,
                    p.Sampling.Seed);
            Report(request, 0, p.StepsRun);
        });
    }

    /// <summary>Tells the request's progress sink (if any) where it stands after a step.</summary>
    public void Progress(ScheduledRun run)
    {
        if (run.Request.Progress is null) return;
        var request = run.Request;
        int step = run.StepsDone, total = run.TotalSteps;
        Post(() => Report(request, step, total));
    }

    private void Report(GenerationRequest request, int step, int total)
    {
        if (request.Progress is not { } sink) return;
        try { sink.Report(new GenerationProgress(step, total)); }
        catch (Exception e)
        {
            using (logger.BeginScope(Tags(request)))
                logger.LogWarning("Progress sink failed: {Error}", e.Message);
        }
    }

    /// <summary>PNG-encodes a rendered preview and hands it to the request's sink. A failed preview never fails the run.</summary>
    public void Preview(RenderedPreview preview)
    {
        var request = preview.Run.Request;
        int step = preview.Run.StepsDone, total = preview.Run.TotalSteps;
        Post(() =>
        {
            using var _ = logger.BeginScope(Tags(request));
            if (preview.Hwc is not { } hwc)
            {
                logger.LogWarning("Preview at step {Step} failed: {Error}", step, preview.Error?.Message);
                return;
            }
            try
            {
                var pngs = hwc.Select(x => PngWriter.Encode(x, preview.Side, preview.Side, preview.Channels)).ToArray();
                request.Preview!.Sink.Report(new GenerationPreview(step, total, preview.Side, preview.Side, pngs));
            }
            catch (Exception e)
            {
                logger.LogWarning("Preview at step {Step} could not be delivered: {Error}", step, e.Message);
            }
        });
    }

    /// <summary>Encodes a finished run's images (HWC bytes) and completes its task.</summary>
    public void Succeed(FinishedRun finished)
    {
        var (run, hwc) = finished;
        Post(() => Encode(run.Request, hwc, run.QueueWait));
    }

    private void Encode(GenerationRequest request, byte[][] hwc, TimeSpan queueWait)
    {
        try
        {
            var p = request.Parameters;
            var labels = p.Labels;
            var images = new GeneratedImage[hwc.Length];
            for (int i = 0; i < hwc.Length; i++)
                images[i] = ImagePipeline.EncodeImage(model, hwc[i], model.ImageSize, model.ImageSize, model.ImageChannels, labels, i, p.Sampling, p.Edit);
            observer.ImagesGenerated(images.Length);
            var total = time.GetElapsedTime(request.EnqueuedAt);
            using (logger.BeginScope(Tags(request)))
                logger.LogInformation("Finished {Images} image(s) in {TotalMs:F0} ms", images.Length, total.TotalMilliseconds);
            request.Succeed(new GenerationResult(images, queueWait, total));
        }
        catch (Exception e)
        {
            observer.WorkerError();
            request.Fail(new GenerationException(GenerationFailure.Error, $"PNG encoding failed: {e.Message}", e));
        }
    }

    /// <summary>Completes a request that leaves without a result: cancelled (no error) or failed. Errors of the server's
    /// own making (not timeouts, not shutdown) are logged and counted.</summary>
    public void End(EndedRequest ended) => Post(() => Complete(ended));

    private void Complete(EndedRequest ended)
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
            if (error.Failure is GenerationFailure.Timeout or GenerationFailure.NonFinite) logger.LogWarning("{Error}", error.Message);
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
