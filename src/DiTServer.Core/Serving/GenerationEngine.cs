using System.Diagnostics;
using DiTServer.Core.Imaging;
using DiTServer.Core.Sampling;
using Microsoft.Extensions.Logging;

namespace DiTServer.Core.Serving;

/// <summary>One device's worker loop: admit requests from the queue between steps, run one batched step over all
/// active requests, hand finished ones to decoding, repeat. Runs on its own thread, the only one that touches the model.</summary>
/// <remarks>Split as vLLM's engine: <see cref="BatchScheduler"/> decides, <see cref="ModelRunner"/> runs, this class
/// moves requests between the two and completes their tasks. One request's failure completes only its own task.</remarks>
public sealed class GenerationEngine
{
    private readonly ModelRunner runner;
    private readonly BatchScheduler scheduler;
    private readonly GenerationQueue queue;
    private readonly ServingOptions options;
    private readonly IServingObserver observer;
    private readonly ILogger logger;
    private readonly List<ActiveGeneration> active = new();
    // Never disposed on purpose (no timers, nothing to free): a host may call StopAsync again after its container
    // has been disposed (WebApplicationFactory does), and shutdown must still be callable then.
    private readonly CancellationTokenSource stopAdmitting = new(), abort = new();
    private readonly TaskCompletionSource finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Thread? thread;
    private volatile bool ready;
    private readonly object swapLock = new();
    private WeightSwap? pendingSwap;
    private int activeCount, activeRows, maxRequestsInForward;
    private long forwards, liveTensors;

    public GenerationEngine(ModelRunner runner, GenerationQueue queue, ServingOptions options, IServingObserver observer, ILogger logger)
    {
        this.runner = runner;
        this.queue = queue;
        this.options = options;
        this.observer = observer;
        this.logger = logger;
        scheduler = new BatchScheduler(options);
    }

    public bool Ready => ready;

    public EngineSnapshot Snapshot() => new(ready, queue.Count, Volatile.Read(ref activeCount), Volatile.Read(ref activeRows),
        Interlocked.Read(ref forwards), Volatile.Read(ref maxRequestsInForward),
        Interlocked.Read(ref liveTensors));

    /// <summary>Starts the loop on a dedicated thread; the task completes when the loop has ended.</summary>
    public Task Start()
    {
        if (thread is not null) throw new InvalidOperationException("already started");
        thread = new Thread(Loop) { IsBackground = true, Name = $"dit-worker-{runner.Model.Device}" };
        thread.Start();
        return finished.Task;
    }

    /// <summary>Graceful stop: the queue refuses new work, queued requests fail with <see cref="GenerationFailure.ShuttingDown"/>,
    /// active ones run to completion. Call <see cref="Abort"/> when the host's shutdown time is up.</summary>
    public void BeginShutdown()
    {
        queue.Close();
        stopAdmitting.Cancel();
        queue.Wake();
    }

    /// <summary>Serves new weights for the same architecture without failing anyone: admission pauses, the requests
    /// already running finish on the old weights, then the worker copies the new ones in (strictly: same keys and
    /// shapes) and admission resumes. Queued requests wait meanwhile. The task ends when the new weights serve.</summary>
    /// <exception cref="InvalidOperationException">Another swap is still pending.</exception>
    public Task ReplaceWeightsAsync(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> weights, string description)
    {
        var swap = new WeightSwap(weights, description);
        lock (swapLock)
        {
            if (pendingSwap is not null) throw new InvalidOperationException("another model activation is still in progress");
            if (finished.Task.IsCompleted) throw new InvalidOperationException("the generation worker is not running");
            pendingSwap = swap;
        }
        queue.Wake();
        return swap.Done.Task;
    }

    private sealed record WeightSwap(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> Weights, string Description)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>True while a swap waits for the running requests to finish (admission stays closed).</summary>
    private bool SwapPending()
    {
        WeightSwap? swap;
        lock (swapLock) swap = pendingSwap;
        if (swap is null) return false;
        if (active.Count > 0) return true;
        try
        {
            runner.ReplaceWeights(swap.Weights, swap.Description);
            logger.LogInformation("Now serving {Weights}", swap.Description);
            swap.Done.TrySetResult();
        }
        catch (Exception e)
        {
            logger.LogError("Activation of {Weights} failed: {Error}; the previous weights keep serving", swap.Description, e.Message);
            swap.Done.TrySetException(e);
        }
        lock (swapLock) pendingSwap = null;
        return false;
    }

    /// <summary>Fails the requests still running at the next step boundary and ends the loop.</summary>
    public void Abort()
    {
        BeginShutdown();
        abort.Cancel();
    }

    private void Loop()
    {
        try
        {
            if (options.IntraOpThreads is int threads) TorchSharp.torch.set_num_threads(threads);
            if (options.WarmUp) WarmUp(); else ready = true;
            while (!abort.IsCancellationRequested)
            {
                DropCancelled();
                if (stopAdmitting.IsCancellationRequested) FailQueued();
                else if (!SwapPending()) Admit();
                if (active.Count == 0)
                {
                    if (stopAdmitting.IsCancellationRequested) break;
                    queue.WaitForWork(stopAdmitting.Token);
                    continue;
                }
                StepOnce();
                Finish();
            }
        }
        catch (Exception e)
        {
            // The loop's own bookkeeping failed (not a request): fail everything rather than hang the clients.
            logger.LogCritical(e, "Generation worker stopped unexpectedly");
            observer.WorkerError();
        }
        finally
        {
            var reason = abort.IsCancellationRequested
                ? "the server shut down before this request finished"
                : "the generation worker stopped";
            // Complete removes from the list: iterate over a copy (enumerating the list itself threw here, on the worker
            // thread, which ended the process and left every running request without an answer).
            foreach (var a in active.ToList()) Complete(a, new GenerationException(GenerationFailure.ShuttingDown, reason));
            Publish();
            FailQueued();
            lock (swapLock)
            {
                pendingSwap?.Done.TrySetException(new InvalidOperationException("the generation worker stopped before the activation"));
                pendingSwap = null;
            }
            finished.TrySetResult();
        }
    }

    private void WarmUp()
    {
        var sw = Stopwatch.StartNew();
        try
        {
            ready = runner.WarmUp();
            if (ready) logger.LogInformation("Warm-up generation finished in {Elapsed:F0} ms; ready", sw.Elapsed.TotalMilliseconds);
            else logger.LogError("Warm-up generation produced NaN or infinity; the server stays not ready");
        }
        catch (Exception e)
        {
            observer.WorkerError();
            logger.LogError("Warm-up generation failed: {Error}; the server stays not ready", e.Message);
        }
    }

    /// <summary>Moves requests from the queue into the batch while they fit (FIFO; request mode only into an empty batch).</summary>
    private void Admit()
    {
        if (!scheduler.AdmissionOpen(active.Count)) return;
        int rows = active.Sum(a => a.Rows);
        while (queue.TryPeek(out var next))
        {
            // TryRemove, not "take the head": a request that left since the peek is no longer the head.
            if (next.Cancellation.IsCancellationRequested || next.IsExpired || next.IsCompleted)
            {
                if (queue.TryRemove(next)) EndUnstarted(next);
                continue;
            }
            if (!scheduler.Fits(rows, next.Parameters.RowsPerStep)) break;
            if (!queue.TryRemove(next)) continue;
            using (logger.BeginScope(Tags(next)))
            {
                try
                {
                    var run = runner.Start(next.Parameters);
                    active.Add(new ActiveGeneration(next, run));
                    rows += next.Parameters.RowsPerStep;
                    Report(next, run);
                    observer.Admitted(next.Age);
                    logger.LogInformation("Admitted after {QueueWaitMs:F0} ms in the queue: {Images} image(s) of class {Class}, {Steps} {Sampler} steps, cfg {Cfg}, seed {Seed}",
                        next.Age.TotalMilliseconds, next.Parameters.NumImages, next.Parameters.ClassLabel, next.Parameters.Sampling.Steps,
                        next.Parameters.Sampling.Sampler, next.Parameters.Sampling.CfgScale, next.Parameters.Sampling.Seed);
                }
                catch (Exception e)
                {
                    observer.WorkerError();
                    logger.LogError("Could not start: {Error}", e.Message);
                    next.Fail(new GenerationException(GenerationFailure.Error, $"generation failed: {e.Message}", e));
                }
            }
        }
        Publish();
    }

    /// <summary>Removes active requests whose client left or whose time ran out; their rows leave the next forward.</summary>
    private void DropCancelled()
    {
        for (int i = active.Count - 1; i >= 0; i--)
        {
            var a = active[i];
            if (a.Request.Cancellation.IsCancellationRequested)
            {
                using (logger.BeginScope(Tags(a.Request)))
                    logger.LogInformation("Cancelled (client left or job deleted) after {Done}/{Total} steps; rows removed", a.Run.StepsDone, a.Run.TotalSteps);
                a.Request.Cancel();
            }
            else if (a.Request.IsExpired)
            {
                using (logger.BeginScope(Tags(a.Request)))
                    logger.LogWarning("Timed out after {Done}/{Total} steps", a.Run.StepsDone, a.Run.TotalSteps);
                a.Request.Fail(new GenerationException(GenerationFailure.Timeout,
                    $"the request did not finish within Serving:RequestTimeout ({options.RequestTimeout}); it had done {a.Run.StepsDone} of {a.Run.TotalSteps} steps"));
            }
            else continue;
            a.Dispose();
            active.RemoveAt(i);
        }
        Publish();
    }

    private void StepOnce()
    {
        var batch = scheduler.Pick(active);
        // Runs for which this step is a preview step keep its x̂₀ (the sampler computes it anyway).
        var previewing = batch.Where(a => a.Request.Preview is { } p && p.Wants(a.Run.StepsDone + 1, a.Run.TotalSteps)).ToList();
        var sw = Stopwatch.StartNew();
        var failures = runner.Step(batch.Select(a => a.Run).ToList(), previewing.Select(a => a.Run).ToHashSet());
        int rows = batch.Sum(a => a.Rows);
        observer.Forward(rows, batch.Count, sw.Elapsed);
        Interlocked.Increment(ref forwards);
        if (batch.Count > maxRequestsInForward) Volatile.Write(ref maxRequestsInForward, batch.Count);
        foreach (var a in batch)
            if (!failures.Any(f => ReferenceEquals(f.Run, a.Run))) Report(a.Request, a.Run);
        foreach (var a in previewing)
            if (!failures.Any(f => ReferenceEquals(f.Run, a.Run))) Preview(a);
        foreach (var (run, error) in failures)
        {
            var a = active.First(x => ReferenceEquals(x.Run, run));
            Complete(a, new GenerationException(GenerationFailure.Error, $"generation failed: {error.Message}", error));
            using (logger.BeginScope(Tags(a.Request)))
                logger.LogError(error, "Sampling step failed");
            observer.WorkerError();
        }
    }

    /// <summary>Decodes every request that finished this step (one VAE batch), then PNG-encodes off this thread.</summary>
    private void Finish()
    {
        var done = active.Where(a => a.Run.Done).ToList();
        if (done.Count == 0) return;
        IReadOnlyList<byte[][]> pixels;
        try
        {
            pixels = runner.Decode(done.Select(a => a.Run).ToList());
        }
        catch (Exception) when (done.Count > 1)
        {
            // Decode each alone so that only the request that cannot be decoded fails.
            pixels = done.Select(a =>
            {
                try { return runner.Decode([a.Run])[0]; }
                catch (Exception e) { Complete(a, new GenerationException(GenerationFailure.Error, $"decoding failed: {e.Message}", e)); observer.WorkerError(); return null!; }
            }).ToList();
        }
        catch (Exception e)
        {
            Complete(done[0], new GenerationException(GenerationFailure.Error, $"decoding failed: {e.Message}", e));
            observer.WorkerError();
            return;
        }
        for (int i = 0; i < done.Count; i++)
        {
            var a = done[i];
            if (a.Request.IsCompleted) continue; // failed above
            var request = a.Request;
            var images = pixels[i];
            var queueWait = Stopwatch.GetElapsedTime(request.EnqueuedAt, a.AdmittedAt);
            active.Remove(a);
            a.Dispose();
            // After the previews handed out earlier, so the request's last preview never follows its result.
            _ = a.PreviewsDelivered.ContinueWith(_ => Encode(request, images, queueWait), TaskScheduler.Default);
        }
        Publish();
    }

    private void Encode(GenerationRequest request, byte[][] hwc, TimeSpan queueWait)
    {
        try
        {
            var model = runner.Model;
            var p = request.Parameters;
            var labels = p.Labels;
            int size = model.ImageSize, channels = model.ImageChannels;
            var images = new GeneratedImage[hwc.Length];
            for (int i = 0; i < hwc.Length; i++)
            {
                var png = PngWriter.Encode(hwc[i], size, size, channels, ImagePipeline.Metadata(model, labels, i, p.Sampling));
                images[i] = new GeneratedImage(i, p.Sampling.Seed, p.ClassLabel, model.Classes[p.ClassLabel], hwc[i], size, size, channels, png);
            }
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

    private void Complete(ActiveGeneration a, GenerationException error)
    {
        a.Request.Fail(error);
        if (active.Remove(a)) a.Dispose();
    }

    private void FailQueued()
    {
        while (queue.TryRead(out var request))
        {
            if (!EndUnstarted(request))
                request.Fail(new GenerationException(GenerationFailure.ShuttingDown, "the server is shutting down; the request was not started"));
        }
    }

    /// <summary>Completes a request that never ran if its client left or its time ran out; false if neither.</summary>
    private bool EndUnstarted(GenerationRequest request)
    {
        if (request.Cancellation.IsCancellationRequested) return request.Cancel() || true;
        if (request.IsExpired)
        {
            request.Fail(new GenerationException(GenerationFailure.Timeout,
                $"the request waited in the queue longer than Serving:RequestTimeout ({options.RequestTimeout})"));
            return true;
        }
        return request.IsCompleted;
    }

    /// <summary>Renders the previews of a run that kept this step's x̂₀ (small tensor work, here on the worker), then
    /// PNG-encodes and delivers them on the thread pool, after the run's earlier previews. A preview that fails is
    /// logged and skipped: it never fails the request.</summary>
    private void Preview(ActiveGeneration a)
    {
        var request = a.Request;
        var preview = request.Preview!;
        (byte[][] Hwc, int Side, int Channels) pixels;
        try { pixels = runner.Preview(a.Run, preview.MaxSide); }
        catch (Exception e)
        {
            using (logger.BeginScope(Tags(request)))
                logger.LogWarning("Preview at step {Step} failed: {Error}", a.Run.StepsDone, e.Message);
            return;
        }
        int step = a.Run.StepsDone, total = a.Run.TotalSteps;
        a.PreviewsDelivered = a.PreviewsDelivered.ContinueWith(_ =>
        {
            try
            {
                var pngs = pixels.Hwc.Select(hwc => PngWriter.Encode(hwc, pixels.Side, pixels.Side, pixels.Channels)).ToArray();
                preview.Sink.Report(new GenerationPreview(step, total, pixels.Side, pixels.Side, pngs));
            }
            catch (Exception e)
            {
                using (logger.BeginScope(Tags(request)))
                    logger.LogWarning("Preview at step {Step} could not be delivered: {Error}", step, e.Message);
            }
        }, TaskScheduler.Default);
    }

    /// <summary>Tells the request's progress sink (if any) where it stands; a sink that throws is logged, never fatal.</summary>
    private void Report(GenerationRequest request, SamplingRun run)
    {
        if (request.Progress is not { } sink) return;
        try { sink.Report(new GenerationProgress(run.StepsDone, run.TotalSteps)); }
        catch (Exception e)
        {
            using (logger.BeginScope(Tags(request)))
                logger.LogWarning("Progress sink failed: {Error}", e.Message);
        }
    }

    private void Publish()
    {
        Volatile.Write(ref activeCount, active.Count);
        Volatile.Write(ref activeRows, active.Sum(a => a.Rows));
        observer.Occupancy(queue.Count, active.Count);
        // Only ever called on the worker thread: the statistics are per thread.
        long live = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Interlocked.Exchange(ref liveTensors, live);
        observer.WorkerTensors(live);
    }

    private static Dictionary<string, object> Tags(GenerationRequest r) => new() { ["RequestId"] = r.Id };
}
