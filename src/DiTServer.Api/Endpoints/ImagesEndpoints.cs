using System.Globalization;
using DiTServer.Api.Observability;
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
            .WithSummary("Generate images of one class")
            .WithDescription("Queued and batched per denoising step with other requests; the same seed and parameters give the same pixels alone or batched.")
            .WithMetadata(new RequestSizeLimitAttribute(maxBody))
            .Produces<ImagesResponse>(StatusCodes.Status200OK, "application/json")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status406NotAcceptable)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status500InternalServerError)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
        return app;
    }

    private static async Task<Results<FileContentHttpResult, Ok<ImagesResponse>, ValidationProblem, ProblemHttpResult>> Generate(
        HttpContext http, LoadedModel model, GenerationQueue queue, GenerationEngine engine, IOptions<ServingOptions> serving, ServingMetrics metrics)
    {
        var o = serving.Value;
        http.Response.Headers["X-Request-Id"] = http.TraceIdentifier;

        if (!ImageResults.Negotiate(http.Request, out bool json))
            return Reject(metrics, "not_acceptable", StatusCodes.Status406NotAcceptable, "Not acceptable",
                "this endpoint answers image/png (the default) or application/json; set Accept to one of them");
        if (http.Request.ContentType is { } contentType && !ImageResults.IsJson(contentType))
            return Reject(metrics, "bad_request", StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"send the body as application/json, not {contentType}");

        var body = await ImageResults.ReadBody(http.Request, o.MaxBodyBytes);
        if (body is null)
        {
            // The rest of the body stays unread and Kestrel drops the connection after this answer; saying so lets a
            // keep-alive client retire the connection instead of sending its next request into a closing socket.
            http.Response.Headers.Connection = "close";
            metrics.Outcome("bad_request");
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["body"] = [$"the body is larger than {o.MaxBodyBytes} bytes"] },
                detail: $"the body is larger than {o.MaxBodyBytes} bytes", title: "Invalid request");
        }
        var limits = ImageBody.LimitsOf(model, o);
        var parameters = ImageRequestParser.Parse(body.Value, limits, out var errors);
        if (parameters is null)
        {
            metrics.Outcome("bad_request");
            return TypedResults.ValidationProblem(errors, detail: string.Join("; ", errors.Values.SelectMany(v => v)), title: "Invalid request");
        }

        var request = new GenerationRequest(http.TraceIdentifier, parameters, o.RequestTimeout, http.RequestAborted) { Client = ClientIdentity.Of(http) };
        switch (queue.TryEnqueue(request))
        {
            case EnqueueResult.ClientLimit:
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                return Reject(metrics, "client_limit", StatusCodes.Status429TooManyRequests, "Too many queued requests", Jobs.JobsEndpoints.ClientLimitDetail(o));
            case EnqueueResult.Full:
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                return Reject(metrics, "queue_full", StatusCodes.Status503ServiceUnavailable, "Queue full",
                    $"all {queue.Capacity} queue places are taken; retry in {o.RetryAfterSeconds} s");
            case EnqueueResult.Closed:
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                return Reject(metrics, "shutting_down", StatusCodes.Status503ServiceUnavailable, "Shutting down", "the server is shutting down and accepts no new requests");
        }
        metrics.Queued(queue.Count);

        GenerationResult result;
        try
        {
            result = await request.Completion;
        }
        catch (OperationCanceledException)
        {
            // The client has gone; nobody reads this answer. 499 is nginx's "client closed request".
            return Reject(metrics, "cancelled", 499, "Client closed request", "the client disconnected; the request was removed from the batch");
        }
        catch (GenerationException e)
        {
            if (e.Failure == GenerationFailure.ShuttingDown)
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
            return e.Failure switch
            {
                GenerationFailure.Timeout => Reject(metrics, "timeout", StatusCodes.Status504GatewayTimeout, "Generation timed out", e.Message),
                GenerationFailure.ShuttingDown => Reject(metrics, "shutting_down", StatusCodes.Status503ServiceUnavailable, "Shutting down", e.Message),
                _ => Reject(metrics, "error", StatusCodes.Status500InternalServerError, "Generation failed", e.Message),
            };
        }

        metrics.Outcome("ok");
        metrics.Completed(result.Total);
        var images = result.Images;
        http.Response.Headers["X-Seed"] = parameters.Sampling.Seed.ToString(CultureInfo.InvariantCulture);
        http.Response.Headers["X-Class-Label"] = parameters.ClassLabel.ToString(CultureInfo.InvariantCulture);
        if (json) return ImageResults.Json(model, images);
        return await ImageResults.Png(model, parameters, images);
    }

    private static ProblemHttpResult Reject(ServingMetrics metrics, string outcome, int status, string title, string detail)
    {
        metrics.Outcome(outcome);
        return TypedResults.Problem(detail: detail, statusCode: status, title: title);
    }
}
