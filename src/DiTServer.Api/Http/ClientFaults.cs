using Microsoft.AspNetCore.Mvc;

namespace DiTServer.Api.Http;

/// <summary>Turns client faults that surface as exceptions into 4xx problem+json with one warning line, and keeps every
/// problem body small.</summary>
/// <remarks>A malformed chunked body, a body cut off mid-way (Kestrel: 400), a body too slow (408) or too large (413)
/// is thrown from the body read, deep inside a handler. Without this each one was a 500 with two stack traces in the log
/// (Serilog's request logging and the exception handler), which made the log cheap to flood. This middleware sits inside
/// the request logging, so that logs a plain 4xx request line. A client that has gone gets no answer and no stack trace.</remarks>
public static class ClientFaults
{
    /// <summary>At most this many fields of a validation problem are listed; the rest are counted.</summary>
    public const int MaxErrorFields = 20;
    public const int MaxMessageChars = 300, MaxDetailChars = 1000, MaxFieldNameChars = 80;

    public static WebApplicationBuilder AddClientFaults(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RequestBodyOptions>().BindConfiguration(RequestBodyOptions.Section)
            .Validate(o => o.Timeout > TimeSpan.Zero, "RequestBody:Timeout must be positive").ValidateOnStart();
        return builder;
    }

    public static WebApplication UseClientFaults(this WebApplication app)
    {
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(ClientFaults).FullName!);
        var problems = app.Services.GetRequiredService<IProblemDetailsService>();
        app.Use(async (context, next) =>
        {
            try
            {
                await next(context);
            }
            catch (BadHttpRequestException e) when (!context.Response.HasStarted)
            {
                logger.LogWarning("Client fault {Status} on {Method} {Path}: {Reason}", e.StatusCode, context.Request.Method, context.Request.Path.Value,
                    e.Message);
                context.Response.Clear();
                context.Response.StatusCode = e.StatusCode;
                // The rest of the body is unread (or unreadable): the connection cannot carry another request.
                context.Response.Headers.Connection = "close";
                await problems.WriteAsync(new ProblemDetailsContext
                {
                    HttpContext = context,
                    ProblemDetails = new ProblemDetails
                    {
                        Status = e.StatusCode,
                        Title = e.StatusCode switch
                        {
                            StatusCodes.Status408RequestTimeout => "Request body too slow",
                            StatusCodes.Status413PayloadTooLarge => "Request body too large",
                            _ => "Malformed request",
                        },
                        Detail = e.StatusCode == StatusCodes.Status400BadRequest ? $"the request body could not be read: {e.Message}" : e.Message,
                    },
                });
            }
            catch (Exception e) when (context.RequestAborted.IsCancellationRequested
                && e is OperationCanceledException or IOException or BadHttpRequestException)
            {
                // The client closed the connection: nobody reads an answer. 499 is nginx's "client closed request".
                logger.LogInformation("Client closed the connection during {Method} {Path}", context.Request.Method, context.Request.Path.Value);
                if (!context.Response.HasStarted) context.Response.StatusCode = 499;
            }
        });
        return app;
    }

    /// <summary>Caps a problem's size whatever produced it: 900 unknown fields gave a 250 KB answer before.</summary>
    public static void Cap(ProblemDetails problem)
    {
        if (problem.Detail is { Length: > MaxDetailChars } detail) problem.Detail = detail[..MaxDetailChars] + "…";
        if (problem is not HttpValidationProblemDetails validation || validation.Errors.Count == 0) return;
        if (validation.Errors.ContainsKey("…")) return; // capped already (the OpenAI dialect caps again on its way out)
        var all = validation.Errors.ToList();
        validation.Errors.Clear();
        foreach (var (field, messages) in all.Take(MaxErrorFields))
            validation.Errors[Shorten(field, MaxFieldNameChars)] = messages.Take(3).Select(m => Shorten(m, MaxMessageChars)).ToArray();
        if (all.Count > MaxErrorFields)
            validation.Errors["…"] = [$"{all.Count - MaxErrorFields} more field(s) with errors are not listed"];
    }

    private static string Shorten(string s, int max) => s.Length <= max ? s : s[..max] + "…";
}
