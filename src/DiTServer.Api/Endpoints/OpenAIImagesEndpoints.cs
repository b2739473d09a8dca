using DiTServer.Api.Hosting;
using DiTServer.Api.Observability;
using DiTServer.Api.Tenants;
using Microsoft.AspNetCore.Mvc;

namespace DiTServer.Api.Endpoints;

/// <summary><c>POST /v1/images/generations</c>: OpenAI's image API shape, so its clients work unchanged. Success
/// answers are OpenAI's (<c>created</c>, <c>data</c>), and so are errors (<c>{"error": {"message", "type", "param", "code"}}</c>,
/// see <see cref="OpenAIErrors"/>): the handler speaks problem details like every endpoint here, and the route translates.</summary>
/// <remarks><c>b64_json</c> runs like <c>POST /v1/images</c> (a client that leaves cancels it). <c>url</c> runs as a
/// job and answers when it has finished, with one <c>/v1/jobs/{id}/result?index=i</c> URL per image (absolute from
/// <c>PublicUrls:BaseUrl</c> or a filtered Host, else relative: see <see cref="PublicUrls"/>), kept
/// for <c>Jobs:ResultTtl</c>.</remarks>
public static class OpenAIImagesEndpoints
{
    public static WebApplication MapOpenAIImagesApi(this WebApplication app)
    {
        var maxBody = app.Services.GetRequiredService<IOptions<ServingOptions>>().Value.TransportBodyLimit;
        app.MapGroup("/v1/images").WithTags("OpenAI-compatible")
            .MapPost("/generations", Generate).WithName("CreateImageOpenAI")
            .WithSummary("OpenAI-style image generation: prompt = class name or index, n, size (must be the model's), response_format b64_json | url")
            .WithDescription("Extras: seed, steps, cfg_scale, sampler. model, user, quality, style and moderation are accepted and ignored; " +
                "output_format must be png and background auto or opaque. Errors are OpenAI's {\"error\": {message, type, param, code}}.")
            .WithMetadata(new RequestSizeLimitAttribute(maxBody))
            .WithJsonBody<OpenAIImageRequest>("""{"prompt": "3", "n": 1, "response_format": "b64_json", "seed": 42}""",
                "OpenAI's image request; prompt is a class name or index. size, when sent, must be the model's resolution.")
            .Produces<OpenAIImagesResponse>(StatusCodes.Status200OK, "application/json")
            .WithOpenAIErrors()
            .RequireTenant() // inside the error translation: a 401 is OpenAI's authentication_error
            .WithGenerationMetrics("/v1/images/generations"); // inside the error translation: it reads the problem
        return app;
    }

    private static async Task<Results<Ok<OpenAIImagesResponse>, ValidationProblem, ProblemHttpResult>> Generate(
        HttpContext http, [AsParameters] OpenAIImageServices services)
    {
        var (model, o) = (services.Model, services.Serving.Value);
        http.Response.Headers["X-Request-Id"] = http.TraceIdentifier;
        string format = OpenAIImageRequestParser.B64Json;
        var parsed = await ImageBody.ReadAsync(http.Request, model, o, (body, limits) =>
        {
            var request = OpenAIImageRequestParser.Parse(body, limits, model.ImageSize, out var errors);
            if (request is not null) format = request.ResponseFormat;
            return (request?.Parameters, errors);
        });
        if (parsed.Unsupported is { } unsupported) return unsupported;
        if (parsed.Invalid is { } invalid) return Coded(invalid, OpenAIImageRequestParser.IsField);
        return await Answer(http, parsed.Parameters!, format, services);
    }

    /// <summary>OpenAI names an unknown field "unknown_parameter"; SDK users match on that code.</summary>
    internal static ValidationProblem Coded(ValidationProblem invalid, Func<string, bool> isField)
    {
        if (invalid.ProblemDetails.Errors.Keys.FirstOrDefault() is { } field && !isField(field) && field != "body")
            invalid.ProblemDetails.Extensions["code"] = "unknown_parameter";
        return invalid;
    }

    /// <summary>Runs a valid request and answers in OpenAI's shape: <c>b64_json</c> as <c>POST /v1/images</c> runs, or
    /// <c>url</c> as a job, one result URL per image. The three OpenAI-style image routes answer through this.</summary>
    internal static async Task<Results<Ok<OpenAIImagesResponse>, ValidationProblem, ProblemHttpResult>> Answer(
        HttpContext http, GenerationParameters parameters, string format, OpenAIImageServices services)
    {
        var (model, scheduler, store, serving, time, urls, shared, outcomes) = services;
        var o = serving.Value;
        var className = model.Classes[parameters.ClassLabel];
        long created = time.GetUtcNow().ToUnixTimeSeconds();

        if (format == OpenAIImageRequestParser.Url)
        {
            if (Jobs.SharedStoreUnavailable.RefusesNewJobs(shared) is { } down) return Jobs.SharedStoreUnavailable.Problem(http, down);
            var (job, outcome) = store.Create(parameters, 0, ClientIdentity.Of(http));
            if (job is null) return GenerationProblems.Refused(http, o, outcome);
            outcomes.Track(http, job.Request);
            try { await job.Finished.WaitAsync(http.RequestAborted); }
            catch (OperationCanceledException)
            {
                job.Cancel(); // nobody will learn the URL
                return GenerationProblems.ClientClosed("the job was cancelled");
            }
            if (job.Result is not { } done) return GenerationProblems.Failed(http, o, job.Failure, job.Snapshot().Error ?? "the job did not finish");
            await shared.WhenPublished(job.Id); // the URLs must work on every replica when the client gets them
            var baseUrl = urls.For(http.Request, $"/v1/jobs/{job.Id}/result"); // never an unchecked Host: see PublicUrls
            return TypedResults.Ok(new OpenAIImagesResponse(created,
                done.Images.Select(i => new OpenAIImage(null, $"{baseUrl}?index={i.Index}", className)).ToList()));
        }

        var generation = ClientIdentity.Of(http).Request(http.TraceIdentifier, parameters, o.RequestTimeout, http.RequestAborted);
        var queued = scheduler.TryAdd(generation);
        if (queued != EnqueueResult.Accepted) return GenerationProblems.Refused(http, o, queued);
        outcomes.Track(http, generation);
        GenerationResult result;
        try { result = await generation.Completion; }
        catch (OperationCanceledException) { return GenerationProblems.ClientClosed("the request was removed from the batch"); }
        catch (GenerationException e) { return GenerationProblems.Failed(http, o, e.Failure, e.Message); }
        return TypedResults.Ok(new OpenAIImagesResponse(created,
            result.Images.Select(i => new OpenAIImage(Convert.ToBase64String(i.Png), null, className)).ToList()));
    }
}

