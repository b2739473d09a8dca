using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace DiTServer.Core.Serving;

/// <summary>One device's worker loop (vLLM's <c>EngineCore</c>), which only loops: read the inbox, schedule, execute,
/// update, hand the outcome to the <see cref="OutputProcessor"/>. Runs on its own thread, the only one that touches its
/// model; one request's failure completes only its own task.</summary>
/// <remarks>The inbox is a channel of <see cref="EngineMessage"/>s: the scheduler posts work arrivals and aborts, the
/// engine posts weight swaps and the final stop. The loop drains it before every step and, with nothing to run, blocks
/// its dedicated thread on the channel until the next message (a blocking wait, not an await: the thread's torch state,
/// its intra-op threads, is per thread).</remarks>
public sealed class EngineCore
{
    private readonly ModelRunner runner;
    private readonly Scheduler scheduler;
    private readonly OutputProcessor outputs;
    private readonly ServingOptions options;
    private readonly IServingObserver observer;
    private readonly ILogger logger;
    private readonly int device;
    private readonly Channel<EngineMessage> inbox = Channel.CreateUnbounded<EngineMessage>(new UnboundedChannelOptions { SingleReader = true });
    private readonly TaskCompletionSource finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly EngineStats stats = new();
    private readonly Lock swapGate = new();
    private EngineMessage.Swap? swapInFlight;
    private bool aborting, loopEnded; // loopEnded: guarded by swapGate
    private Thread? thread;

    /// <param name="device">This core's index in <paramref name="scheduler"/>'s devices.</param>
    /// <param name="label">The device as metrics and logs name it (<c>cpu:0</c>, <c>cuda:1</c>).</param>
    public EngineCore(ModelRunner runner, Scheduler scheduler, int device, ServingOptions options, IServingObserver observer, ILogger logger, string label)
    {
        Label = label;
        this.runner = runner;
        this.scheduler = scheduler;
        this.device = device;
        this.options = options;
        this.observer = observer;
        this.logger = logger;
        outputs = new OutputProcessor(runner.Model, observer, logger, scheduler.Time);
        scheduler.Connect(device, inbox.Writer);
        scheduler.SetCacheRowBytes(device, Sampling.FeatureCache.RowBytes(runner.Model.Config));
    }

    public string Label { get; }
    public bool Ready => stats.Ready;

    public EngineSnapshot Snapshot() => stats.Snapshot(scheduler.Count);

    /// <summary>Starts the loop on a dedicated thread; the task completes when the loop has ended and every answer is out.</summary>
    public Task Start()
    {
        if (thread is not null) throw new InvalidOperationException("already started");
        thread = new Thread(Loop) { IsBackground = true, Name = $"dit-worker-{Label}" };
        thread.Start();
        return finished.Task;
    }

    /// <summary>Graceful stop: the scheduler refuses new work, queued requests fail with
    /// <see cref="GenerationFailure.ShuttingDown"/>, running ones run to completion, then the loop ends. Call
    /// <see cref="Abort"/> when the host's shutdown time is up.</summary>
    public void BeginShutdown() => scheduler.Close();

    /// <summary>Fails the requests still running at the next step boundary and ends the loop.</summary>
    public void Abort()
    {
        BeginShutdown();
        inbox.Writer.TryWrite(EngineMessage.Stop.Instance);
    }

    /// <summary>Serves new weights for the same architecture without failing anyone: admission to this device pauses,
    /// the requests already running finish on the old weights, the worker copies the new ones in (strictly: same keys
    /// and shapes) and admission resumes. The task ends when the new weights serve, or faults with why they do not.</summary>
    /// <exception cref="InvalidOperationException">Another swap is pending, or the worker is not running.</exception>
    public Task ReplaceWeightsAsync(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> weights, string description)
    {
        var swap = new EngineMessage.Swap(weights, description);
        lock (swapGate)
        {
            if (loopEnded || thread is null) throw new InvalidOperationException("the generation worker is not running");
            if (swapInFlight is not null) throw new InvalidOperationException("another model activation is still in progress");
            swapInFlight = swap;
        }
        inbox.Writer.TryWrite(swap);
        return swap.Done.Task;
    }

    /// <summary>Queues tensor work for this core's thread (<see cref="EngineMessage.Work"/>); it runs before the next
    /// step, or is abandoned if the loop ends first. False when the loop has ended (nothing would run it).</summary>
    public bool Post(EngineMessage.Work work)
    {
        lock (swapGate)
        {
            if (loopEnded) return false;
            return inbox.Writer.TryWrite(work);
        }
    }

    private void Loop()
    {
        try
        {
            ModelRunner.SetThreads(options.IntraOpThreads);
            stats.Ready = !options.WarmUp || WarmUp();
            while (true)
            {
                while (inbox.Reader.TryRead(out var message)) Handle(message);
                if (aborting) break;
                var plan = scheduler.Schedule(device);
                if (plan.Swap is { } swap)
                {
                    End(plan.Ended);
                    runner.FreeAll(); // nothing runs on this device: only the state of the runs that just ended is left
                    Swap(swap);
                    continue;
                }
                var sw = Stopwatch.StartNew();
                var outcome = runner.Execute(plan);
                var update = scheduler.Update(plan, outcome);
                // Once per step, after the update: the runs that ended or finished are gone and their tensors freed (the
                // runner frees them in Execute), so an idle worker shows its true state.
                Publish();
                Report(plan, outcome, update, sw.Elapsed);
                if (plan.Batch.Count == 0 && scheduler.Running(device).Count == 0)
                {
                    if (scheduler.IsClosed) break; // graceful stop: nothing runs and the queue was ended
                    inbox.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult();
                }
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
            End(scheduler.EndAll(device, aborting ? "the server shut down before this request finished" : "the generation worker stopped"));
            runner.FreeAll();
            lock (swapGate)
            {
                swapInFlight?.Done.TrySetException(new InvalidOperationException("the generation worker stopped before the activation"));
                swapInFlight = null;
                loopEnded = true;
                // Posted under the same lock, so no work arrives after this drain and none waits forever.
                while (inbox.Reader.TryRead(out var left))
                    if (left is EngineMessage.Work work) work.Abandon();
            }
            Publish();
            outputs.Complete();
            outputs.Drained.ContinueWith(_ => finished.TrySetResult(), TaskScheduler.Default);
        }
    }

    private void Handle(EngineMessage message)
    {
        switch (message)
        {
            case EngineMessage.Abort abort: scheduler.Abort(device, abort.Request); break;
            case EngineMessage.Swap swap: scheduler.BeginSwap(device, swap); break;
            case EngineMessage.Stop: aborting = true; break;
            case EngineMessage.Work work: work.Run(runner.Model); break;
            case EngineMessage.Added: break; // the schedule that follows looks for work
        }
    }

    /// <summary>Copies the swap's weights in between steps (nothing runs on this device), then resumes admission.</summary>
    private void Swap(EngineMessage.Swap swap)
    {
        try
        {
            runner.ReplaceWeights(swap.Weights, swap.Description);
            logger.LogInformation("Now serving {Weights} on {Device}", swap.Description, Label);
            swap.Done.TrySetResult();
        }
        catch (Exception e)
        {
            logger.LogError("Activation of {Weights} failed: {Error}; the previous weights keep serving", swap.Description, e.Message);
            swap.Done.TrySetException(e);
        }
        scheduler.EndSwap(device);
        lock (swapGate) swapInFlight = null;
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

    /// <summary>Hands a step's outcome to the output processor and the metrics.</summary>
    private void Report(SchedulerOutput plan, RunnerOutput outcome, SchedulerUpdate update, TimeSpan elapsed)
    {
        End(plan.Ended);
        foreach (var run in plan.Admitted)
            if (!outcome.Failed.ContainsKey(run)) outputs.Admitted(run);
        var stepped = plan.Batch.Where(r => !outcome.Failed.ContainsKey(r)).ToList();
        if (plan.Batch.Count > 0)
        {
            observer.Forward(plan.BatchRows, plan.Batch.Count, elapsed);
            stats.Forward(plan.Batch.Count);
            if (plan.Paused > 0) observer.Paused(plan.Paused);
            if (outcome.FullSteps + outcome.CachedSteps > 0) observer.Steps(outcome.FullSteps, outcome.CachedSteps);
        }
        End(update.Ended);
        foreach (var run in stepped) outputs.Progress(run);
        foreach (var preview in outcome.Previews) outputs.Preview(preview);
        foreach (var done in update.Finished) outputs.Succeed(done);
    }

    private void End(IReadOnlyList<EndedRequest> ended)
    {
        foreach (var e in ended) outputs.End(e);
    }

    private void Publish()
    {
        long live = ModelRunner.LiveTensorsOnThisThread; // worker thread only: the statistics are per thread
        var running = scheduler.Running(device);
        stats.Occupancy(running.Count, running.Sum(r => r.Rows), live);
        observer.Occupancy(scheduler.Count, running.Count);
        observer.WorkerTensors(live);
    }
}
