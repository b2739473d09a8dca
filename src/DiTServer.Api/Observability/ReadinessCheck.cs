using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace DiTServer.Api.Observability;

/// <summary>Ready when the model is loaded, the start-up warm-up generation finished with finite output, and the queue
/// has a free place. A full queue answers every new request 503, so while it is full the pod says not-ready and a load
/// balancer (a Kubernetes Service drops not-ready pods from its endpoints) sends new work to the other replicas. Liveness
/// does not run this check: a saturated pod is healthy and must not be restarted.</summary>
public sealed class ReadinessCheck(GenerationEngine engine, Scheduler scheduler) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var s = engine.Snapshot();
        if (!s.Ready) return Task.FromResult(HealthCheckResult.Unhealthy("warm-up generation has not finished (or produced NaN/infinity)"));
        int queued = scheduler.Count;
        return Task.FromResult(queued >= scheduler.Capacity
            ? HealthCheckResult.Unhealthy($"queue full: {queued} of {scheduler.Capacity} places taken; new requests are refused until one frees")
            : HealthCheckResult.Healthy($"model loaded and warmed up; {s.ActiveRequests} active, {queued} of {scheduler.Capacity} queued"));
    }
}
