using DiTServer.Api.Observability;
using DiTServer.Api.Tenants;
using Microsoft.AspNetCore.Mvc;

namespace DiTServer.Api.Endpoints;

/// <summary><c>POST /v1/images/edits</c> and <c>POST /v1/images/variations</c>: OpenAI's image-to-image routes, multipart
/// uploads as its SDKs send them (<see cref="OpenAIImageForm"/>), run as native edits (<c>init_image</c>, <c>strength</c>,
/// <c>mask</c>) and answered like <c>/v1/images/generations</c> (<see cref="OpenAIImagesEndpoints.Answer"/>).</summary>
/// <remarks>An edit draws the <c>prompt</c> class; OpenAI's mask is transparent where the picture is redrawn. A
/// variation keeps the class the served model finds most likely in the picture (<see cref="ClassGuess"/>, run on a
/// worker thread between steps, at most <see cref="ClassGuessOptions.Rows"/> rows); <c>revised_prompt</c> names it.</remarks>
public static class OpenAIImageEditsEndpoints
{
    public static WebApplication MapOpenAIImageEditsApi(this WebApplication app)
    {
        app.MapUpload<OpenAIImageEditForm>("/v1/images/edits", Edit, OpenAIImageEditForm.Example, "The picture, the optional mask and the class to draw.")
            .WithName("EditImageOpenAI")
            .WithSummary("OpenAI-style image edit: image (PNG), optional mask (transparent = redraw), prompt = class name or index, n, size, response_format")
            .WithDescription("multipart/form-data. A square image of another size is resized to the model's. Extra: strength (0 < s ≤ 1; default 1 " +
                "with a mask, 0.75 without) and the extras of /v1/images/generations. Errors are OpenAI's {\"error\": {message, type, param, code}}.");
        app.MapUpload<OpenAIImageVariationForm>("/v1/images/variations", Vary, OpenAIImageVariationForm.Example, "The picture to vary.")
            .WithName("CreateImageVariationOpenAI")
            .WithSummary("OpenAI-style image variation: image (PNG), n, size, response_format; the class is the one the model finds in the image")
            .WithDescription("multipart/form-data. The class is guessed by the served model (a diffusion classifier) and returned as revised_prompt. " +
                "Extra: strength (default 0.75) and the extras of /v1/images/generations. Errors are OpenAI's {\"error\": {...}}.");
        return app;
    }

    /// <summary>A multipart upload route, documented as <typeparamref name="TForm"/>, bounded in size, and answered, failed
    /// and counted like <c>/v1/images/generations</c>.</summary>
    private static RouteHandlerBuilder MapUpload<TForm>(this IEndpointRouteBuilder routes, string path, Delegate handler, string example,
        string description) =>
        routes.MapPost(path, handler).WithTags("OpenAI-compatible")
            .WithFormBody<TForm>(example, description)
            .WithMetadata(new RequestSizeLimitAttribute(OpenAIImageForm.MaxBodyBytes))
            .Produces<OpenAIImagesResponse>(StatusCodes.Status200OK, "application/json")
            .WithOpenAIErrors()
            .RequireTenant() // inside the error translation: a 401 is OpenAI's authentication_error
            .WithGenerationMetrics(path); // inside the error translation: it reads the problem

    private static async Task<Results<Ok<OpenAIImagesResponse>, ValidationProblem, ProblemHttpResult>> Edit(
        HttpContext http, [AsParameters] OpenAIImageServices services)
    {
        http.Response.Headers["X-Request-Id"] = http.TraceIdentifier;
        var parsed = await OpenAIImageForm.ReadAsync(http.Request, services.Model, services.Serving.Value, variation: false);
        if (parsed.Unsupported is { } unsupported) return unsupported;
        if (parsed.Invalid is { } invalid) return OpenAIImagesEndpoints.Coded(invalid, OpenAIImageForm.IsField);
        return await OpenAIImagesEndpoints.Answer(http, parsed.Upload!.Parameters, parsed.Upload.ResponseFormat, services);
    }

    private static async Task<Results<Ok<OpenAIImagesResponse>, ValidationProblem, ProblemHttpResult>> Vary(
        HttpContext http, [AsParameters] OpenAIImageServices services, GenerationEngine engine, ClassGuesses guesses)
    {
        http.Response.Headers["X-Request-Id"] = http.TraceIdentifier;
        var o = services.Serving.Value;
        var parsed = await OpenAIImageForm.ReadAsync(http.Request, services.Model, o, variation: true);
        if (parsed.Unsupported is { } unsupported) return unsupported;
        if (parsed.Invalid is { } invalid) return OpenAIImagesEndpoints.Coded(invalid, OpenAIImageForm.IsField);
        var upload = parsed.Upload!;
        int label;
        try { label = await guesses.GuessAsync(engine, upload.Parameters.Edit!, o, http.RequestAborted); }
        catch (OperationCanceledException) { return GenerationProblems.ClientClosed("the class guess was abandoned"); }
        catch (ClassGuesses.BusyException e) { return GenerationProblems.Busy(http, o, e.Message); }
        catch (InvalidOperationException e) { return GenerationProblems.Failed(http, o, GenerationFailure.ShuttingDown, e.Message); }
        return await OpenAIImagesEndpoints.Answer(http, upload.Parameters with { ClassLabel = label }, upload.ResponseFormat, services);
    }
}
