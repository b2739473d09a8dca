using Microsoft.Extensions.Logging;

namespace DiTServer.Core.Serving;

/// <summary>The serving engine of a process: one <see cref="EngineCore"/> per device (each with its own model copy,
/// worker thread and runner), all scheduled by ONE <see cref="Scheduler"/>, so a device takes work whenever it has
/// room and none idles while requests wait.</summary>
/// <remarks>A request's pixels do not depend on the device that ran it: every run draws from its own seeded CPU
/// generator and every core holds the same weights.</remarks>
public sealed class GenerationEngine
{
    private readonly Scheduler scheduler;

    /// <summary>One device.</summary>
    public GenerationEngine(ModelRunner runner, Scheduler scheduler, ServingOptions options, IServingObserver observer, ILogger logger)
        : this([new Device(runner, observer, DeviceLabels.Of([runner.Model.Device.ToString()])[0])], scheduler, options, logger) { }

    /// <summary>Several devices sharing the scheduler (which must have been made for as many devices).</summary>
    public GenerationEngine(IReadOnlyList<Device> devices, Scheduler scheduler, ServingOptions options, ILogger logger)
    {
        if (devices.Count == 0) throw new ArgumentException("at least one device", nameof(devices));
        if (devices.Count != scheduler.Devices)
            throw new ArgumentException($"the scheduler has {scheduler.Devices} device(s), the engine {devices.Count}", nameof(devices));
        this.scheduler = scheduler;
        Cores = devices.Select((d, i) => new EngineCore(d.Runner, scheduler, i, options, d.Observer, logger, d.Label)).ToList();
    }

    /// <summary>A device's runner, its metrics and its label (<see cref="DeviceLabels"/>).</summary>
    public sealed record Device(ModelRunner Runner, IServingObserver Observer, string Label);

    public IReadOnlyList<EngineCore> Cores { get; }
    public Scheduler Scheduler => scheduler;

    /// <summary>Ready when every device has warmed up.</summary>
    public bool Ready => Cores.All(c => c.Ready);

    /// <summary>The whole process: ready only when every device is; counts summed over devices.</summary>
    public EngineSnapshot Snapshot()
    {
        var all = Cores.Select(c => c.Snapshot()).ToList();
        return new EngineSnapshot(all.All(s => s.Ready), scheduler.Count, all.Sum(s => s.ActiveRequests), all.Sum(s => s.ActiveRows),
            all.Sum(s => s.Forwards), all.Max(s => s.MaxRequestsInOneForward), all.Sum(s => s.WorkerLiveTensors));
    }

    /// <summary>Starts every device's loop; the task completes when all have ended.</summary>
    public Task Start() => Task.WhenAll(Cores.Select(c => c.Start()).ToList());

    /// <inheritdoc cref="EngineCore.BeginShutdown"/>
    public void BeginShutdown() => scheduler.Close();

    /// <inheritdoc cref="EngineCore.Abort"/>
    public void Abort()
    {
        foreach (var c in Cores) c.Abort();
    }

    /// <summary>Serves new weights on every device (each pauses admission, finishes what runs, swaps). Ends when all
    /// devices serve them; faults if any could not.</summary>
    public Task ReplaceWeightsAsync(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> weights, string description) =>
        Task.WhenAll(Cores.Select(c => c.ReplaceWeightsAsync(weights, description)).ToList());

    /// <summary>Runs tensor work that is no generation on a worker thread, between two steps (the model is never called
    /// from a request thread). The least busy device takes it.</summary>
    /// <exception cref="InvalidOperationException">No worker is running (the task faults with it).</exception>
    public Task<T> RunOnWorkerAsync<T>(Func<Pipeline.LoadedModel, T> work, CancellationToken cancellation = default)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var message = new EngineMessage.Work(model =>
        {
            if (cancellation.IsCancellationRequested) { done.TrySetCanceled(cancellation); return; } // nobody waits for it
            try { done.TrySetResult(work(model)); }
            catch (Exception e) { done.TrySetException(e); }
        }, () => done.TrySetException(new InvalidOperationException("the generation worker stopped before this work ran")));
        var core = Cores.OrderBy(c => c.Snapshot().ActiveRows).FirstOrDefault(c => c.Post(message));
        if (core is null) done.TrySetException(new InvalidOperationException("the generation worker is not running"));
        return done.Task;
    }
}
