using System.Globalization;
using DiTServer.Api.Observability;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Imaging;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;

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

        if (!Negotiate(http.Request, out bool json))
            return Reject(metrics, "not_acceptable", StatusCodes.Status406NotAcceptable, "Not acceptable",
                "this endpoint answers image/png (the default) or application/json; set Accept to one of them");
        if (http.Request.ContentType is { } contentType && !IsJson(contentType))
            return Reject(metrics, "bad_request", StatusCodes.Status415UnsupportedMediaType, "Unsupported media type",
                $"send the body as application/json, not {contentType}");

        var body = await ReadBody(http.Request, o.MaxBodyBytes);
        if (body is null)
        {
            // The rest of the body stays unread and Kestrel drops the connection after this answer; saying so lets a
            // keep-alive client retire the connection instead of sending its next request into a closing socket.
            http.Response.Headers.Connection = "close";
            metrics.Outcome("bad_request");
            return TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["body"] = [$"the body is larger than {o.MaxBodyBytes} bytes"] },
                detail: $"the body is larger than {o.MaxBodyBytes} bytes", title: "Invalid request");
        }
        var limits = new ImageRequestParser.Limits(model.Classes, model.Config.NumClasses, model.Config.ClassDropoutProb > 0, o.MaxImagesPerRequest);
        var parameters = ImageRequestParser.Parse(body.Value, limits, out var errors);
        if (parameters is null)
        {
            metrics.Outcome("bad_request");
            return TypedResults.ValidationProblem(errors, detail: string.Join("; ", errors.Values.SelectMany(v => v)), title: "Invalid request");
        }

        var request = new GenerationRequest(http.TraceIdentifier, parameters, o.RequestTimeout, http.RequestAborted);
        switch (queue.TryEnqueue(request))
        {
            case EnqueueResult.Full:
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                return Reject(metrics, "queue_full", StatusCodes.Status503ServiceUnavailable, "Queue full",
                    $"all {queue.Capacity} queue places are taken; retry in {o.RetryAfterSeconds} s");
            case EnqueueResult.Closed:
                http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
                return Reject(metrics, "shutting_down", StatusCodes.Status503ServiceUnavailable, "Shutting down", "the server is shutting down and accepts no new requests");
        }
        var s = engine.Snapshot();
        metrics.Occupancy(s.QueueDepth, s.ActiveRequests);

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
        if (json)
            return TypedResults.Ok(new ImagesResponse(model.Name,
                images.Select(i => new ImageItem(i.Index, i.Seed, i.ClassLabel, i.ClassName, Convert.ToBase64String(i.Png))).ToList()));
        if (images.Count == 1) return TypedResults.File(images[0].Png, "image/png");
        var png = await Task.Run(() => Grid(model, parameters, images)); // CPU work off the request's thread, never on the worker
        return TypedResults.File(png, "image/png");
    }

    /// <summary>torchvision-style grid (4 per row, 2 px padding) with the first image's metadata, minus its batch index.</summary>
    private static byte[] Grid(LoadedModel model, GenerationParameters p, IReadOnlyList<GeneratedImage> images)
    {
        var first = images[0];
        var (hwc, w, h) = ImageGrid.Tile(images.Select(i => i.Hwc).ToList(), first.Width, first.Height, first.Channels);
        var metadata = ImagePipeline.Metadata(model, p.Labels, 0, p.Sampling)
            .Where(kv => kv.Key != "batch_index")
            .Append(new("grid", $"{images.Count} images, 4 per row, 2 px padding"));
        return PngWriter.Encode(hwc, w, h, first.Channels, metadata);
    }

    /// <summary>image/png unless the client prefers application/json; false when it accepts neither.</summary>
    private static bool Negotiate(HttpRequest request, out bool json)
    {
        json = false;
        var accept = request.GetTypedHeaders().Accept;
        if (accept is null || accept.Count == 0) return true;
        double Quality(string type) => accept
            .Where(a => a.MediaType.HasValue && a.MatchesMediaType(type))
            .Select(a => a.Quality ?? 1.0).DefaultIfEmpty(0).Max();
        double png = Quality("image/png"), js = Quality("application/json");
        json = js > png;
        return Math.Max(png, js) > 0;
    }

    private static bool IsJson(string contentType) =>
        MediaTypeHeaderValue.TryParse(contentType, out var mt) &&
        (mt.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) || mt.Suffix.Equals("json", StringComparison.OrdinalIgnoreCase));

    /// <summary>The whole body, or null when it is larger than <paramref name="max"/> bytes.</summary>
    private static async Task<ReadOnlyMemory<byte>?> ReadBody(HttpRequest request, int max)
    {
        if (request.ContentLength > max) return null;
        var buffer = new byte[max + 1];
        int total = 0;
        try
        {
            while (total < buffer.Length)
            {
                int n = await request.Body.ReadAsync(buffer.AsMemory(total), request.HttpContext.RequestAborted);
                if (n == 0) break;
                total += n;
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return null; // Kestrel enforced the endpoint's RequestSizeLimit
        }
        return total > max ? null : buffer.AsMemory(0, total);
    }

    private static ProblemHttpResult Reject(ServingMetrics metrics, string outcome, int status, string title, string detail)
    {
        metrics.Outcome(outcome);
        return TypedResults.Problem(detail: detail, statusCode: status, title: title);
    }
}
