namespace DiTServer.Core.Serving;

/// <summary>What the worker is doing right now, for health, metrics and tests.</summary>
/// <param name="WorkerLiveTensors">Tensors created on the worker thread and not yet disposed (TorchSharp's per-thread
/// dispose statistics), as of the worker's last state change; flat after warm-up when nothing leaks.</param>
public sealed record EngineSnapshot(bool Ready, int QueueDepth, int ActiveRequests, int ActiveRows, long Forwards, int MaxRequestsInOneForward,
    long WorkerLiveTensors = 0);
