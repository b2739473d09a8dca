using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace DiTServer.Core.Serving;

/// <summary>One device's worker loop, vLLM's split: <see cref="Scheduler"/> plans each step, <see cref="ModelRunner"/>
/// runs it, the scheduler takes the outcome, <see cref="OutputProcessor"/> encodes and answers. Runs on its own thread,
/// the only one that touches the model; one request's failure completes only its own task.</summary>
public sealed class GenerationEngine
{
    private readonly ModelRunner runner;
    private readonly Scheduler scheduler;
    private readonly OutputProcessor outputs;
    private readonly GenerationQueue queue;
    private readonly ServingOptions options;
    private readonly IServingObserver observer;
    private readonly ILogger logger;
    private readonly WeightSwapper swapper;
    // Never disposed on purpose (no timers, nothing to free): a host may call StopAsync again after its container
    // has been disposed (WebApplicationFactory does), and shutdown must still be callable then.
    private readonly CancellationTokenSource stopAdmitting = new(), abort = new();
    private readonly TaskCompletionSource finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Thread? thread;
    private volatile bool ready;
    private int activeCount, activeRows, maxRequestsInForward;
    private long forwards, liveTensors;

    public GenerationEngine(ModelRunner runner, GenerationQueue queue, ServingOptions options, IServingObserver observer, ILogger logger)
    {
        this.runner = runner;
        this.queue = queue;
        this.options = options;
        this.observer = observer;
        this.logger = logger;
        scheduler = new Scheduler(options, queue);
        outputs = new OutputProcessor(runner.Model, observer, logger);
        swapper = new WeightSwapper(runner, logger);
    }

    public bool Ready => ready;

    public EngineSnapshot Snapshot() => new(ready, queue.Count, Volatile.Read(ref activeCount), Volatile.Read(ref activeRows),
        Interlocked.Read(ref forwards), Volatile.Read(ref maxRequestsInForward), Interlocked.Read(ref liveTensors));

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

    /// <summary>Fails the requests still running at the next step boundary and ends the loop.</summary>
    public void Abort()
    {
        BeginShutdown();
        abort.Cancel();
    }

    /// <inheritdoc cref="WeightSwapper.Request"/>
    public Task ReplaceWeightsAsync(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> weights, string description)
    {
        if (finished.Task.IsCompleted) throw new InvalidOperationException("the generation worker is not running");
        var done = swapper.Request(weights, description);
        queue.Wake();
        return done;
    }

    private void Loop()
    {
        try
        {
            ModelRunner.SetThreads(options.IntraOpThreads);
            if (options.WarmUp) WarmUp(); else ready = true;
            while (!abort.IsCancellationRequested)
            {
                bool stopping = stopAdmitting.IsCancellationRequested;
                if (stopping) End(scheduler.DrainQueue());
                // A pending swap closes admission until the running requests are done, then happens here, between steps.
                bool admit = !stopping && !swapper.TrySwap(scheduler.Running.Count);
                var plan = scheduler.Schedule(admit);
                End(plan.Ended);
                foreach (var run in plan.Admitted) StartRun(run);
                // A run the runner could not start has left the scheduler already; it leaves this forward too.
                if (plan.Batch.Any(r => r.Sampling is null)) plan = plan with { Batch = plan.Batch.Where(r => r.Sampling is not null).ToList() };
                Publish();
                if (plan.Batch.Count == 0)
                {
                    if (scheduler.Running.Count > 0) continue;
                    if (stopping) break;
                    queue.WaitForWork(stopAdmitting.Token);
                    continue;
                }
                Step(plan);
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
            var reason = abort.IsCancellationRequested ? "the server shut down before this request finished" : "the generation worker stopped";
            foreach (var run in scheduler.Running.ToList())
            {
                scheduler.Remove(run);
                End([new EndedRequest(run.Request, run, new GenerationException(GenerationFailure.ShuttingDown, reason))]);
            }
            End(scheduler.DrainQueue());
            Publish();
            swapper.Cancel();
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

    private void StartRun(ScheduledRun run)
    {
        var request = run.Request;
        var p = request.Parameters;
        using var _ = logger.BeginScope(OutputProcessor.Tags(request));
        try
        {
            run.Sampling = runner.Start(p);
            observer.Admitted(request.Age);
            outputs.Progress(run);
            logger.LogInformation("Admitted after {QueueWaitMs:F0} ms in the queue for {Client}: {Images} image(s) of class {Class}, {Steps} {Sampler} steps, cfg {Cfg}, seed {Seed}",
                request.Age.TotalMilliseconds, request.Client, p.NumImages, p.ClassLabel, p.Sampling.Steps, p.Sampling.Sampler, p.Sampling.CfgScale, p.Sampling.Seed);
        }
        catch (Exception e)
        {
            scheduler.Remove(run);
            End([new EndedRequest(request, run, new GenerationException(GenerationFailure.Error, $"generation failed: {e.Message}", e))]);
        }
    }

    /// <summary>One forward over the plan's batch, then the scheduler's bookkeeping, previews, progress and decoding.</summary>
    private void Step(SchedulerOutput plan)
    {
        var batch = plan.Batch;
        // Runs for which this step is a preview step keep its x̂₀ (the sampler computes it anyway).
        var previewing = batch.Where(r => r.Request.Preview is { } p && p.Wants(r.StepsDone + 1, r.TotalSteps)).ToHashSet();
        var sw = Stopwatch.StartNew();
        var failed = runner.Execute(batch, previewing);
        observer.Forward(plan.BatchRows, batch.Count, sw.Elapsed);
        Interlocked.Increment(ref forwards);
        if (batch.Count > maxRequestsInForward) Volatile.Write(ref maxRequestsInForward, batch.Count);
        var done = scheduler.Update(plan, failed);
        foreach (var (run, error) in failed)
            End([new EndedRequest(run.Request, run, new GenerationException(GenerationFailure.Error, $"generation failed: {error.Message}", error))]);
        foreach (var run in batch.Where(r => !failed.ContainsKey(r)))
        {
            outputs.Progress(run);
            if (previewing.Contains(run)) Preview(run);
        }
        Decode(done);
        Publish();
    }

    /// <summary>Renders a preview from the x̂₀ the run kept (small tensor work, here); a failed preview never fails the run.</summary>
    private void Preview(ScheduledRun run)
    {
        try { outputs.Preview(run, runner.Preview(run.Sampling!, run.Request.Preview!.MaxSide)); }
        catch (Exception e)
        {
            using (logger.BeginScope(OutputProcessor.Tags(run.Request)))
                logger.LogWarning("Preview at step {Step} failed: {Error}", run.StepsDone, e.Message);
        }
    }

    /// <summary>Decodes every run that finished this step in one VAE batch (each alone if that fails, so only the run
    /// that cannot be decoded fails), then hands the pixels to the output processor.</summary>
    private void Decode(IReadOnlyList<ScheduledRun> done)
    {
        if (done.Count == 0) return;
        IReadOnlyList<byte[][]?> pixels;
        try { pixels = runner.Decode(done.Select(r => r.Sampling!).ToList()); }
        catch (Exception) when (done.Count > 1)
        {
            pixels = done.Select(r => { try { return runner.Decode([r.Sampling!])[0]; } catch (Exception e) { Fail(r, e); return null; } }).ToList();
        }
        catch (Exception e) { Fail(done[0], e); return; }
        for (int i = 0; i < done.Count; i++)
        {
            done[i].Release();
            if (pixels[i] is { } images) outputs.Succeed(done[i], images);
        }

        void Fail(ScheduledRun run, Exception e)
        {
            run.Release();
            End([new EndedRequest(run.Request, run, new GenerationException(GenerationFailure.Error, $"decoding failed: {e.Message}", e))]);
        }
    }

    /// <summary>Answers requests that leave without a result and frees their runner state.</summary>
    private void End(IReadOnlyList<EndedRequest> ended)
    {
        foreach (var e in ended)
        {
            e.Run?.Release();
            outputs.End(e);
        }
    }

    private void Publish()
    {
        Volatile.Write(ref activeCount, scheduler.Running.Count);
        Volatile.Write(ref activeRows, scheduler.RunningRows);
        observer.Occupancy(queue.Count, scheduler.Running.Count);
        long live = ModelRunner.LiveTensorsOnThisThread; // worker thread only: the statistics are per thread
        Interlocked.Exchange(ref liveTensors, live);
        observer.WorkerTensors(live);
    }
}
