using DiTServer.Api.Observability;
using DiTServer.Api.Tenants;
using Microsoft.AspNetCore.Mvc;

namespace DiTServer.Api.Endpoints;

/// <summary><c>POST /v1/images</c>: validate, enqueue (503 at once when full), await the worker, answer PNG or JSON.</summary>
public static class ImagesEndpoints
{
    public const string GenerateName = "GenerateImages";

    public static WebApplication MapImagesApi(this WebApplication app)
    {
        var maxBody = app.Services.GetRequiredService<IOptions<ServingOptions>>().Value.TransportBodyLimit;
        app.MapGroup("/v1/images").WithTags("Images")
            .MapPost("/", Generate)
            .WithName(GenerateName)
            .WithGenerationMetrics("/v1/images")
            .RequireTenant() // inside the metrics: a 401 counts as outcome "unauthorized"
            .WithSummary("Generate images of one class")
            .WithDescription("Queued and batched per denoising step with other requests; the same seed and parameters give the same pixels alone or batched.")
            .WithMetadata(new RequestSizeLimitAttribute(maxBody))
            .WithJsonBody<ImageRequest>(ImageRequest.Example, "What to generate. Only class_label is required.", examples: ImageRequest.SamplerExamples)
            .Produces<ImagesResponse>(StatusCodes.Status200OK, "application/json")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status406NotAcceptable)
            .ProducesProblem(StatusCodes.Status408RequestTimeout)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(GenerationProblems.NonFiniteStatus)
            .ProducesProblem(StatusCodes.Status500InternalServerError)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
        return app;
    }

    private static async Task<Results<FileContentHttpResult, Ok<ImagesResponse>, ValidationProblem, ProblemHttpResult>> Generate(
        HttpContext http, LoadedModel model, Scheduler scheduler, IOptions<ServingOptions> serving,
        ServingMetrics metrics, GenerationMetrics outcomes)
    {
        var o = serving.Value;
        http.Response.Headers["X-Request-Id"] = http.TraceIdentifier;

        if (!ImageResults.Negotiate(http.Request, out bool json)) return ImageResults.NotAcceptable();
        var parsed = await ImageBody.ReadAsync(http.Request, model, o); // 415, 400; too large, too slow, malformed: ClientFaults
        if (parsed.Unsupported is { } unsupported) return unsupported;
        if (parsed.Invalid is { } invalid) return invalid;
        var parameters = parsed.Parameters!;

        var request = ClientIdentity.Of(http).Request(http.TraceIdentifier, parameters, o.RequestTimeout, http.RequestAborted);
        if (scheduler.TryAdd(request) is var outcome and not EnqueueResult.Accepted) return GenerationProblems.Refused(http, o, outcome);
        outcomes.Track(http, request);
        metrics.Queued(scheduler.Count);

        GenerationResult result;
        try { result = await request.Completion; }
        catch (OperationCanceledException) { return GenerationProblems.ClientClosed("the request was removed from the batch"); }
        catch (GenerationException e) { return GenerationProblems.Failed(http, o, e.Failure, e.Message); }

        var images = result.Images;
        ImageResults.ReproductionHeaders(http.Response, parameters.Sampling.Seed, parameters.ClassLabel);
        if (json) return ImageResults.Json(model, images);
        return await ImageResults.Png(model, parameters, images);
    }
}
