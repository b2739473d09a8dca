using DiTServer.Api.Http;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.OpenApi;
using Prometheus;

namespace DiTServer.Api.Observability;

/// <summary>Problem details, health checks, Prometheus and Swagger: everything around the endpoints.</summary>
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
        builder.Services.AddHealthChecks().AddCheck<ReadinessCheck>("model", tags: ["ready"]);
        builder.Services.AddEndpointsApiExplorer();
        builder.Services.AddSwaggerGen(c =>
        {
            c.SwaggerDoc("v1", new OpenApiInfo
            {
                Title = "DiTServer",
                Version = "v1",
                Description = "Class-conditional image generation with a Diffusion Transformer, batched per denoising step.",
            });
            c.OperationFilter<ImagesOperationFilter>();
        });
        return builder;
    }

    /// <summary>Errors as problem+json, request logging, Swagger UI at /swagger.</summary>
    public static WebApplication UseServerPipeline(this WebApplication app)
    {
        app.UseExceptionHandler();
        app.UseStatusCodePages();
        app.UseServerRequestLogging();
        app.UseClientFaults(); // inside the request logging: a client fault is logged as a plain 4xx line
        app.UseSwagger();
        app.UseSwaggerUI(); // /swagger
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
