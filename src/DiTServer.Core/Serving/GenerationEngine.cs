using Microsoft.Extensions.Logging;

namespace DiTServer.Core.Serving;

/// <summary>The serving engine of a process: one <see cref="EngineCore"/> per device (each with its own model copy,
/// worker thread, scheduler and runner), all pulling from ONE <see cref="GenerationQueue"/>, so a device takes work
/// whenever it has room and none idles while requests wait.</summary>
/// <remarks>A request's pixels do not depend on the device that ran it: every run draws from its own seeded CPU
/// generator and every core holds the same weights.</remarks>
public sealed class GenerationEngine
{
    private readonly GenerationQueue queue;

    /// <summary>One device.</summary>
    public GenerationEngine(ModelRunner runner, GenerationQueue queue, ServingOptions options, IServingObserver observer, ILogger logger)
        : this([new Device(runner, observer, DeviceLabels.Of([runner.Model.Device.ToString()])[0])], queue, options, logger) { }

    /// <summary>Several devices sharing the queue.</summary>
    public GenerationEngine(IReadOnlyList<Device> devices, GenerationQueue queue, ServingOptions options, ILogger logger)
    {
        if (devices.Count == 0) throw new ArgumentException("at least one device", nameof(devices));
        this.queue = queue;
        Cores = devices.Select(d => new EngineCore(d.Runner, queue, options, d.Observer, logger, d.Label)).ToList();
    }

    /// <summary>A device's runner, its metrics and its label (<see cref="DeviceLabels"/>).</summary>
    public sealed record Device(ModelRunner Runner, IServingObserver Observer, string Label);

    public IReadOnlyList<EngineCore> Cores { get; }

    /// <summary>Ready when every device has warmed up.</summary>
    public bool Ready => Cores.All(c => c.Ready);

    /// <summary>The whole process: ready only when every device is; counts summed over devices.</summary>
    public EngineSnapshot Snapshot()
    {
        var all = Cores.Select(c => c.Snapshot()).ToList();
        return new EngineSnapshot(all.All(s => s.Ready), queue.Count, all.Sum(s => s.ActiveRequests), all.Sum(s => s.ActiveRows),
            all.Sum(s => s.Forwards), all.Max(s => s.MaxRequestsInOneForward), all.Sum(s => s.WorkerLiveTensors));
    }

    /// <summary>Starts every device's loop; the task completes when all have ended.</summary>
    public Task Start() => Task.WhenAll(Cores.Select(c => c.Start()).ToList());

    /// <inheritdoc cref="EngineCore.BeginShutdown"/>
    public void BeginShutdown()
    {
        foreach (var c in Cores) c.BeginShutdown();
    }

    /// <inheritdoc cref="EngineCore.Abort"/>
    public void Abort()
    {
        foreach (var c in Cores) c.Abort();
    }

    /// <summary>Serves new weights on every device (each pauses admission, finishes what runs, swaps). Ends when all
    /// devices serve them; faults if any could not.</summary>
    public Task ReplaceWeightsAsync(IReadOnlyDictionary<string, TorchSharp.torch.Tensor> weights, string description) =>
        Task.WhenAll(Cores.Select(c => c.ReplaceWeightsAsync(weights, description)).ToList());
}
