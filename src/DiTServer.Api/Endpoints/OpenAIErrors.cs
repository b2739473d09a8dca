using System.Text.Json;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Mvc;

namespace DiTServer.Api.Endpoints;

/// <summary>OpenAI's error dialect for the OpenAI-style routes: <c>{"error": {"message", "type", "param", "code"}}</c>.
/// The official SDKs read only this object; given problem+json they report "400 status code (no body)".</summary>
/// <remarks>Handlers keep returning problem details like every endpoint here; <see cref="Filter"/> translates them on
/// the way out, and <see cref="Writer"/> does the same for errors the framework writes itself (an exception, a status
/// code page), so one definition of each error serves both dialects.</remarks>
public static class OpenAIErrors
{
    /// <summary>Marks an endpoint whose errors are written in OpenAI's dialect.</summary>
    public sealed class Dialect;

    /// <summary>Puts the route into OpenAI's error dialect.</summary>
    /// <summary>Registers the problem writer that speaks OpenAI's error object on the OpenAI-style routes; call it
    /// before <c>AddProblemDetails</c> (AddServerObservability), so that it is asked first.</summary>
    public static WebApplicationBuilder AddOpenAIErrorDialect(this WebApplicationBuilder builder)
    {
        builder.Services.AddSingleton<IProblemDetailsWriter, Writer>();
        return builder;
    }

    public static RouteHandlerBuilder WithOpenAIErrors(this RouteHandlerBuilder route) =>
        route.WithMetadata(new Dialect())
            .AddEndpointFilter(Filter)
            .WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status400BadRequest, typeof(OpenAIErrorResponse), ["application/json"]));

    private static async ValueTask<object?> Filter(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var result = await next(context);
        var inner = result is INestedHttpResult nested ? nested.Result : result;
        if (inner is IValueHttpResult { Value: ProblemDetails problem })
        {
            int status = (inner as IStatusCodeHttpResult)?.StatusCode ?? problem.Status ?? StatusCodes.Status500InternalServerError;
            return TypedResults.Json(From(problem, status), OpenAIErrorJson.Options, statusCode: status);
        }
        return result;
    }

    /// <summary>OpenAI's error object for a problem: the first invalid field is <c>param</c>; <c>type</c> and <c>code</c>
    /// follow OpenAI's names where one fits (<c>invalid_request_error</c>, <c>server_error</c>, <c>model_not_found</c>).</summary>
    public static OpenAIErrorResponse From(ProblemDetails problem, int status)
    {
        DiTServer.Api.Http.ClientFaults.Cap(problem); // the message joins every field's errors: bounded like problem+json
        string? param = null;
        string message = problem.Detail ?? problem.Title ?? "error";
        if (problem is HttpValidationProblemDetails { Errors.Count: > 0 } validation)
        {
            var first = validation.Errors.First();
            param = first.Key == "body" ? null : first.Key;
            // Every field's messages, the first field first, so a client that prints message shows the whole story.
            message = string.Join("; ", validation.Errors.SelectMany(e => e.Value));
        }
        else if (problem.Extensions.TryGetValue("param", out var p) && p is string named) param = named;
        string? code = problem.Extensions.TryGetValue("code", out var c) && c is string given ? given : CodeOf(status, param);
        string type = status switch
        {
            StatusCodes.Status401Unauthorized => "authentication_error",
            StatusCodes.Status404NotFound => "invalid_request_error",
            StatusCodes.Status429TooManyRequests => "rate_limit_error",
            >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        return new OpenAIErrorResponse(new OpenAIError(message, type, param, code));
    }

    private static string? CodeOf(int status, string? param) => status switch
    {
        StatusCodes.Status400BadRequest => param is null ? "invalid_request" : "invalid_value",
        StatusCodes.Status404NotFound => "not_found",
        StatusCodes.Status413PayloadTooLarge => "request_too_large",
        StatusCodes.Status415UnsupportedMediaType => "unsupported_media_type",
        StatusCodes.Status429TooManyRequests => "rate_limit_exceeded",
        GenerationProblems.NonFiniteStatus => "sampling_diverged",
        StatusCodes.Status503ServiceUnavailable => "server_busy",
        StatusCodes.Status504GatewayTimeout => "timeout",
        499 => "client_closed_request",
        _ => null,
    };

    /// <summary>The OpenAI-style paths. Routing's own answers there (405 for another method) come from an endpoint without
    /// <see cref="Dialect"/>, so the path decides too.</summary>
    public static bool IsOpenAIPath(PathString path)
    {
        var p = path.Value?.TrimEnd('/') ?? "";
        return p.Equals("/v1/images/generations", StringComparison.OrdinalIgnoreCase)
            || p.Equals("/v1/images/edits", StringComparison.OrdinalIgnoreCase)
            || p.Equals("/v1/images/variations", StringComparison.OrdinalIgnoreCase)
            || (p.StartsWith("/v1/models/", StringComparison.OrdinalIgnoreCase) && p.Length > "/v1/models/".Length);
    }

    /// <summary>Writes framework-made problems (exception handler, status code pages) in OpenAI's dialect on the
    /// routes marked with <see cref="Dialect"/>; registered before the default writer, it declines everywhere else.</summary>
    public sealed class Writer : IProblemDetailsWriter
    {
        public bool CanWrite(ProblemDetailsContext context) =>
            context.HttpContext.GetEndpoint()?.Metadata.GetMetadata<Dialect>() is not null || IsOpenAIPath(context.HttpContext.Request.Path);

        public ValueTask WriteAsync(ProblemDetailsContext context)
        {
            var http = context.HttpContext;
            var body = From(context.ProblemDetails, context.ProblemDetails.Status ?? http.Response.StatusCode);
            return new ValueTask(http.Response.WriteAsJsonAsync(body, OpenAIErrorJson.Options));
        }
    }
}

/// <summary><c>{"error": {...}}</c>, the body of every error answer in OpenAI's API.</summary>
public sealed record OpenAIErrorResponse(OpenAIError Error);

/// <summary>OpenAI's error object; <c>param</c> names the request field at fault, <c>code</c> a machine-readable reason.
/// Both are written as null when unknown, as OpenAI does.</summary>
public sealed record OpenAIError(
    string Message,
    string Type,
    string? Param,
    string? Code);

internal static class OpenAIErrorJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = WireJson.Names };
}
