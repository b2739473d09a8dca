using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace DiTServer.Core.Serving;

/// <summary>One device's worker loop (vLLM's <c>EngineCore</c>): <see cref="Scheduler"/> plans each step,
/// <see cref="ModelRunner"/> runs it, the scheduler takes the outcome, <see cref="OutputProcessor"/> encodes and answers.
/// Runs on its own thread, the only one that touches its model; one request's failure completes only its own task.
/// Several cores may pull from one <see cref="GenerationQueue"/> (<see cref="GenerationEngine"/>).</summary>
public sealed class EngineCore
{
    private readonly ModelRunner runner;
    private readonly Scheduler scheduler;
    private readonly OutputProcessor outputs;
    private readonly GenerationQueue queue;
    private readonly ServingOptions options;
    private readonly IServingObserver observer;
    private readonly ILogger logger;
    private readonly WeightSwapper swapper;
    private readonly ManualResetEventSlim work;
    // Never disposed on purpose (no timers, nothing to free): a host may call StopAsync again after its container
    // has been disposed (WebApplicationFactory does), and shutdown must still be callable then.
    private readonly CancellationTokenSource stopAdmitting = new(), abort = new();
    private readonly TaskCompletionSource finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly EngineStats stats = new();
    private Thread? thread;

    /// <param name="label">The device as metrics and logs name it (<c>cpu:0</c>, <c>cuda:1</c>).</param>
    public EngineCore(ModelRunner runner, GenerationQueue queue, ServingOptions options, IServingObserver observer, ILogger logger, string label)
    {
        Label = label;
        this.runner = runner;
        this.queue = queue;
        this.options = options;
        this.observer = observer;
        this.logger = logger;
        scheduler = new Scheduler(options, queue);
        outputs = new OutputProcessor(runner.Model, observer, logger);
        swapper = new WeightSwapper(runner.ReplaceWeights, logger);
        work = queue.Subscribe();
    }

    public string Label { get; }
    public bool Ready => stats.Ready;

    public EngineSnapshot Snapshot() => stats.Snapshot(queue.Count);

    /// <summary>Starts the loop on a dedicated thread; the task completes when the loop has ended.</summary>
    public Task Start()
    {
        if (thread is not null) throw new InvalidOperationException("already started");
        thread = new Thread(Loop) { IsBackground = true, Name = $"dit-worker-{Label}" };
        thread.Start();
        return finished.Task;
    }

    /// <summary>Graceful stop: the queue refuses new work, queued requests fail with <see cref="GenerationFailure.ShuttingDown"/>,
    /// active ones run to completion. Call <see cref="Abort"/> when the host's shutdown time is up.</summary>
    public void BeginShutdown()
    {
        queue.Close(); // first: once a worker sees stopAdmitting, nothing new can arrive behind its last drain
        stopAdmitting.Cancel(); // also ends the worker's wait for work
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
            stats.Ready = !options.WarmUp || WarmUp();
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
                    queue.WaitForWork(work, stopAdmitting.Token);
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
            End(scheduler.EndAll(abort.IsCancellationRequested ? "the server shut down before this request finished" : "the generation worker stopped"));
            Publish();
            swapper.Cancel();
            finished.TrySetResult();
        }
    }

    /// <summary>A small guided generation; true when it gave finite output (then <c>/health/ready</c> may turn ready).</summary>
    private bool WarmUp()
    {
        var sw = Stopwatch.StartNew();
        string? problem;
        try { problem = runner.WarmUp() ? null : "produced NaN or infinity"; }
        catch (Exception e)
        {
            observer.WorkerError();
            problem = $"failed: {e.Message}";
        }
        if (problem is null) logger.LogInformation("Warm-up generation on {Device} finished in {Elapsed:F0} ms; ready", Label, sw.Elapsed.TotalMilliseconds);
        else logger.LogError("Warm-up generation on {Device} {Problem}; the server stays not ready", Label, problem);
        return problem is null;
    }

    private void StartRun(ScheduledRun run)
    {
        try
        {
            run.Sampling = runner.Start(run.Request.Parameters);
            outputs.Admitted(run);
        }
        catch (Exception e)
        {
            scheduler.Remove(run);
            End([EndedRequest.Failed(run, "generation failed", e)]);
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
        if (scheduler.Running.Count > batch.Count) observer.Paused(scheduler.Running.Count - batch.Count);
        stats.Forward(batch.Count);
        var done = scheduler.Update(plan, failed);
        End(failed.Select(f => EndedRequest.Failed(f.Key, "generation failed", f.Value)).ToList());
        foreach (var run in batch.Where(r => !failed.ContainsKey(r)))
        {
            outputs.Progress(run);
            if (previewing.Contains(run)) outputs.Preview(run, () => runner.Preview(run.Sampling!, run.Request.Preview!.MaxSide));
        }
        if (done.Count > 0)
        {
            // Decoded together, released here (their tensors are this thread's), encoded and answered by the output processor.
            var decoded = runner.DecodeEach(done.Select(r => r.Sampling!).ToList());
            foreach (var run in done) run.Release();
            outputs.Finished(done, decoded);
        }
        Publish();
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
        long live = ModelRunner.LiveTensorsOnThisThread; // worker thread only: the statistics are per thread
        stats.Occupancy(scheduler.Running.Count, scheduler.RunningRows, live);
        observer.Occupancy(queue.Count, scheduler.Running.Count);
        observer.WorkerTensors(live);
    }
}
