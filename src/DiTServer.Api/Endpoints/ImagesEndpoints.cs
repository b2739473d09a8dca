using System.Globalization;
using DiTServer.Api.Http;
using DiTServer.Api.Observability;
using DiTServer.Api.OpenApi;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Serving;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;

namespace DiTServer.Api.Endpoints;

/// <summary><c>POST /v1/images</c>: validate, enqueue (503 at once when full), await the worker, answer PNG or JSON.</summary>
public static class ImagesEndpoints
{
    public const string GenerateName = "GenerateImages";

    public static WebApplication MapImagesApi(this WebApplication app)
    {
        var maxBody = app.Services.GetRequiredService<IOptions<ServingOptions>>().Value.MaxBodyBytes;
        app.MapGroup("/v1/images").WithTags("Images")
            .MapPost("/", Generate)
            .WithName(GenerateName)
            .WithGenerationMetrics("/v1/images")
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
            .ProducesProblem(StatusCodes.Status500InternalServerError)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
        return app;
    }

    private static async Task<Results<FileContentHttpResult, Ok<ImagesResponse>, ValidationProblem, ProblemHttpResult>> Generate(
        HttpContext http, LoadedModel model, GenerationQueue queue, IOptions<ServingOptions> serving,
        ServingMetrics metrics, GenerationMetrics outcomes)
    {
        var o = serving.Value;
        http.Response.Headers["X-Request-Id"] = http.TraceIdentifier;

        if (!ImageResults.Negotiate(http.Request, out bool json))
            return Reject(StatusCodes.Status406NotAcceptable, "Not acceptable",
                "this endpoint answers image/png (the default) or application/json; set Accept to one of them");
        if (http.Request.ContentType is { } contentType && !ImageResults.IsJson(contentType))
            return Reject(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"send the body as application/json, not {contentType}");

        var body = await RequestBody.ReadAsync(http.Request, o.MaxBodyBytes); // too large, too slow, malformed: thrown, answered by ClientFaults
        var limits = ImageBody.LimitsOf(model, o);
        var parameters = ImageRequestParser.Parse(body, limits, out var errors);
        if (parameters is null)
        {
            return TypedResults.ValidationProblem(errors, detail: string.Join("; ", errors.Values.SelectMany(v => v)), title: "Invalid request");
        }

        var request = new GenerationRequest(http.TraceIdentifier, parameters, o.RequestTimeout, http.RequestAborted) { Client = ClientIdentity.Of(http) };
        switch (queue.TryEnqueue(request))
        {
            case EnqueueResult.ClientLimit:
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                return Reject(StatusCodes.Status429TooManyRequests, "Too many queued requests", Jobs.JobsEndpoints.ClientLimitDetail(o));
            case EnqueueResult.Full:
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                return Reject(StatusCodes.Status503ServiceUnavailable, GenerationMetrics.QueueFullTitle,
                    $"all {queue.Capacity} queue places are taken; retry in {o.RetryAfterSeconds} s");
            case EnqueueResult.Closed:
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                return Reject(StatusCodes.Status503ServiceUnavailable, "Shutting down", "the server is shutting down and accepts no new requests");
        }
        outcomes.Track(http, request);
        metrics.Queued(queue.Count);

        GenerationResult result;
        try
        {
            result = await request.Completion;
        }
        catch (OperationCanceledException)
        {
            // The client has gone; nobody reads this answer. 499 is nginx's "client closed request".
            return Reject(499, "Client closed request", "the client disconnected; the request was removed from the batch");
        }
        catch (GenerationException e)
        {
            if (e.Failure == GenerationFailure.ShuttingDown)
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return e.Failure switch
            {
                GenerationFailure.Timeout => Reject(StatusCodes.Status504GatewayTimeout, "Generation timed out", e.Message),
                GenerationFailure.ShuttingDown => Reject(StatusCodes.Status503ServiceUnavailable, "Shutting down", e.Message),
                _ => Reject(StatusCodes.Status500InternalServerError, "Generation failed", e.Message),
            };
        }

        var images = result.Images;
        http.Response.Headers["X-Seed"] = parameters.Sampling.Seed.ToString(CultureInfo.InvariantCulture);
        http.Response.Headers["X-Class-Label"] = parameters.ClassLabel.ToString(CultureInfo.InvariantCulture);
        if (json) return ImageResults.Json(model, images);
        return await ImageResults.Png(model, parameters, images);
    }

    private static ProblemHttpResult Reject(int status, string title, string detail) =>
        TypedResults.Problem(detail: detail, statusCode: status, title: title);
}
