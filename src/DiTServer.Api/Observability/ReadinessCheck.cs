using DiTServer.Core.Serving;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace DiTServer.Api.Observability;

/// <summary>Ready when the model is loaded and the start-up warm-up generation finished with finite output.</summary>
public sealed class ReadinessCheck(GenerationEngine engine) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var s = engine.Snapshot();
        return Task.FromResult(s.Ready
            ? HealthCheckResult.Healthy($"model loaded and warmed up; {s.ActiveRequests} active, {s.QueueDepth} queued")
            : HealthCheckResult.Unhealthy("warm-up generation has not finished (or produced NaN/infinity)"));
    }
}
