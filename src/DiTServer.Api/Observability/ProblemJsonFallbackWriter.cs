namespace DiTServer.Api.Observability;

/// <summary>Writes problem+json when the default writer declines because the client's Accept names neither JSON nor
/// problem+json (e.g. <c>Accept: image/png</c> on an unknown path): every error answer of this server is then
/// problem+json, never a bare "Status Code: 404" text. Registered after the default writer, so it runs only as its fallback.</summary>
public sealed class ProblemJsonFallbackWriter(IOptions<ProblemDetailsOptions> options) : IProblemDetailsWriter
{
    public bool CanWrite(ProblemDetailsContext context) => true;

    public ValueTask WriteAsync(ProblemDetailsContext context)
    {
        var problem = context.ProblemDetails;
        var http = context.HttpContext;
        problem.Status ??= http.Response.StatusCode;
        problem.Title ??= Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(http.Response.StatusCode);
        options.Value.CustomizeProblemDetails?.Invoke(context);
        return new ValueTask(http.Response.WriteAsJsonAsync(problem, typeof(Microsoft.AspNetCore.Mvc.ProblemDetails), options: null,
            contentType: "application/problem+json"));
    }
}
