namespace DiTServer.Core.Serving;

/// <summary>What the worker reports for metrics; the Api implements it with Prometheus, the benchmark with nothing.</summary>
public interface IServingObserver
{
    void Admitted(TimeSpan queueWait);
    /// <summary>One DiT forward (model + guidance + sampler updates) over <paramref name="rows"/> rows from <paramref name="requests"/> requests.</summary>
    void Forward(int rows, int requests, TimeSpan duration);
    void ImagesGenerated(int count);
    void WorkerError();
    /// <summary>Queue depth and active requests after they changed.</summary>
    void Occupancy(int queued, int active);
    /// <summary>Runs left out of this step's forward to share it with other clients (fair sharing), after a forward.</summary>
    void Paused(int runs) { }
    /// <summary>Run-steps of one forward that ran the DiT's blocks (<paramref name="full"/>) or used their feature cache
    /// (<paramref name="cached"/>, cache_interval &gt; 1).</summary>
    void Steps(int full, int cached) { }
    /// <summary>Tensors alive on the worker thread (created there, not yet disposed) after a state change.</summary>
    void WorkerTensors(long live) { }
}

/// <summary>Reports nothing.</summary>
public sealed class NullServingObserver : IServingObserver
{
    public static NullServingObserver Instance { get; } = new();
    public void Admitted(TimeSpan queueWait) { }
    public void Forward(int rows, int requests, TimeSpan duration) { }
    public void ImagesGenerated(int count) { }
    public void WorkerError() { }
    public void Occupancy(int queued, int active) { }
}
