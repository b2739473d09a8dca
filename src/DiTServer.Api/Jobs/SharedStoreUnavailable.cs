using System.Globalization;
using DiTServer.Api.Observability;

namespace DiTServer.Api.Jobs;

/// <summary>The shared job store (<c>SharedStore:Redis</c>) cannot be reached: a lookup cannot tell whether another replica
/// holds the job, and a new job could not be recorded for the others, so the job routes answer 503 + Retry-After at once
/// instead of waiting for Redis (issue 19: an unknown id took 5.6–6 s, and jobs made during an outage were unknown after it).</summary>
public sealed class SharedStoreUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

public static class SharedStoreUnavailable
{
    /// <summary>503 problem+json with Retry-After (<c>Serving:RetryAfterSeconds</c>).</summary>
    public static ProblemHttpResult Problem(HttpContext http, string detail)
    {
        var o = http.RequestServices.GetRequiredService<IOptions<ServingOptions>>().Value;
        http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
        return http.Mark(Refusal.StoreUnavailable, TypedResults.Problem(detail: $"{detail}; retry in {o.RetryAfterSeconds} s",
            statusCode: StatusCodes.Status503ServiceUnavailable, title: "Shared job store unavailable"));
    }

    /// <summary>Why a job cannot be created now (the store is configured and unreachable), or null.</summary>
    public static string? RefusesNewJobs(ISharedJobs shared) => shared.Enabled && !shared.Reachable
        ? "the shared job store (SharedStore:Redis) is unreachable, so a new job could not be seen by the other replicas; no job was created"
        : null;

    /// <summary>Puts the job routes behind the store: a new job is refused while the store is unreachable, and a store
    /// call that fails answers 503 (both fast, within <c>SharedStore:TimeoutMs</c>).</summary>
    public static TBuilder WithSharedStoreGuard<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (context, next) =>
        {
            var http = context.HttpContext;
            if (HttpMethods.IsPost(http.Request.Method) && RefusesNewJobs(http.RequestServices.GetRequiredService<ISharedJobs>()) is { } why)
                return Problem(http, why);
            try { return await next(context); }
            catch (SharedStoreUnavailableException e) { return Problem(http, e.Message); }
        });
}
