using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Prometheus;

namespace DiTServer.Api.Observability;

/// <summary>Problem details, health checks and Prometheus: everything around the endpoints (Swagger: <c>OpenApi/</c>).</summary>
public static class ObservabilityRegistration
{
    public static WebApplicationBuilder AddServerObservability(this WebApplicationBuilder builder)
    {
        builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = ctx =>
        {
            ctx.ProblemDetails.Extensions["requestId"] = ctx.HttpContext.TraceIdentifier;
            DiTServer.Api.Http.ClientFaults.Cap(ctx.ProblemDetails);
        });
        builder.Services.AddSingleton<IProblemDetailsWriter, ProblemJsonFallbackWriter>();
        builder.Services.AddSingleton<GenerationMetrics>();
        ConfigureExportedMeters();
        builder.Services.AddHealthChecks().AddCheck<ReadinessCheck>("model", tags: ["ready"]);
        return builder;
    }

    private static readonly Lock MetersGate = new();
    private static bool metersConfigured;

    /// <summary>Keeps /metrics to families that pass <c>promtool check metrics</c> (CI runs it). Process-wide, once:
    /// prometheus-net's default registry is static.</summary>
    private static void ConfigureExportedMeters()
    {
        lock (MetersGate)
        {
            if (metersConfigured) return;
            metersConfigured = true;
            // The event-counter adapter re-exports the runtime's counters as gauges named *_total / *_count, which
            // promtool rejects; prometheus-net's own dotnet_* and process_* families report the same facts.
            Metrics.SuppressDefaultMetrics(new SuppressDefaultMetricOptions { SuppressEventCounters = true });
            Metrics.ConfigureMeterAdapter(o => o.InstrumentFilterPredicate = instrument => IsExportedMeter(instrument.Meter.Name));
        }
    }

    /// <summary>.NET's private diagnostic meters ("Private.InternalDiagnostics.System.Net.Quic" and the like) are runtime
    /// internals (~30 private_internaldiagnostics_* families once Kestrel loads msquic); System.Runtime's gauges are
    /// named *_count against Prometheus' conventions and duplicate dotnet_*. Everything else (ASP.NET Core, Kestrel,
    /// HttpClient) is exported.</summary>
    public static bool IsExportedMeter(string meterName) =>
        !meterName.StartsWith("Private.", StringComparison.OrdinalIgnoreCase) && meterName != "System.Runtime";

    /// <summary>Errors as problem+json, request logging.</summary>
    public static WebApplication UseServerPipeline(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseServerRequestLogging();
        app.UseClientFaults(); // inside the request logging: a client fault is logged as a plain 4xx line
        return app;
    }

    /// <summary><c>/health/live</c> (process up), <c>/health/ready</c> (model warmed up) and the KServe v2 twins; <c>/metrics</c>.</summary>
    public static WebApplication MapServerProbes(this WebApplication app)
    {
        foreach (var prefix in new[] { "/health", "/v2/health" })
        {
            app.MapHealthChecks($"{prefix}/live", new HealthCheckOptions { Predicate = _ => false }).WithTags("Health");
            app.MapHealthChecks($"{prefix}/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains("ready") }).WithTags("Health");
        }
        app.MapMetrics();
        return app;
    }
}
