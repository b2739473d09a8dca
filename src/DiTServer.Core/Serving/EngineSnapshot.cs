namespace DiTServer.Core.Serving;

/// <summary>What the worker is doing right now, for health, metrics and tests.</summary>
public sealed record EngineSnapshot(bool Ready, int QueueDepth, int ActiveRequests, int ActiveRows, long Forwards, int MaxRequestsInOneForward);
