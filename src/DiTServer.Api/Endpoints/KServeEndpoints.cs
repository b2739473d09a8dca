using System.Reflection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace DiTServer.Api.Endpoints;

/// <summary>KServe's Open Inference Protocol (v2) metadata and readiness: <c>GET /v2</c>, <c>/v2/models/{name}</c>
/// and <c>/v2/models/{name}/ready</c>, beside <c>/v2/health/live|ready</c>, so KServe, Triton-style clients and
/// probes find the server where that protocol puts it. Generation itself stays on <c>/v1</c> (no <c>/infer</c>):
/// a diffusion request is a class label and sampling settings, not a tensor.</summary>
public static class KServeEndpoints
{
    public static WebApplication MapKServeApi(this WebApplication app)
    {
        var group = app.MapGroup("/v2").WithTags("KServe v2");
        group.MapGet("", Server).WithName("KServeServerMetadata").WithSummary("Server metadata: name, version, extensions");
        group.MapGet("/models/{name}", Model).WithName("KServeModelMetadata")
            .WithSummary("Model metadata: platform and the request/response fields as v2 tensors; 404 for another model")
            .ProducesProblem(StatusCodes.Status404NotFound);
        group.MapGet("/models/{name}/ready", Ready).WithName("KServeModelReady")
            .WithSummary("200 when the model is loaded and warmed up (the readiness check), 400 before; 404 for another model")
            .ProducesProblem(StatusCodes.Status404NotFound);
        return app;
    }

    private static Ok<KServeServer> Server() =>
        TypedResults.Ok(new KServeServer("ditserver",
            typeof(KServeEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0",
            []));

    private static Results<Ok<KServeModel>, ProblemHttpResult> Model(string name, LoadedModel model)
    {
        if (name != model.Name) return Unknown(name, model);
        int size = model.ImageSize, channels = model.ImageChannels;
        return TypedResults.Ok(new KServeModel(model.Name, ["1"], "torchsharp",
            [new("class_label", "INT32", [-1]), new("seed", "INT64", [-1])],
            [new("image", "UINT8", [-1, size, size, channels])]));
    }

    /// <summary>KServe answers readiness by status alone: 200 ready, 400 not (its spec's choice, kept for its clients).</summary>
    private static async Task<Results<Ok, BadRequest, ProblemHttpResult>> Ready(string name, LoadedModel model, HealthCheckService health,
        CancellationToken cancel)
    {
        if (name != model.Name) return Unknown(name, model);
        var report = await health.CheckHealthAsync(c => c.Tags.Contains("ready"), cancel);
        return report.Status == HealthStatus.Healthy ? TypedResults.Ok() : TypedResults.BadRequest();
    }

    private static ProblemHttpResult Unknown(string name, LoadedModel model) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Unknown model",
            detail: $"no model '{name}'; this server serves '{model.Name}'");
}

public sealed record KServeServer(
    string Name,
    string Version,
    IReadOnlyList<string> Extensions);

public sealed record KServeModel(
    string Name,
    IReadOnlyList<string> Versions,
    string Platform,
    IReadOnlyList<KServeTensor> Inputs,
    IReadOnlyList<KServeTensor> Outputs);

/// <summary>A v2 tensor description; -1 is a dimension of any size (here: the number of images).</summary>
public sealed record KServeTensor(
    string Name,
    string Datatype,
    IReadOnlyList<int> Shape);
