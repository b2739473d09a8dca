using System.Globalization;
using DiTServer.Api.Observability;

namespace DiTServer.Api.Generation;

/// <summary>The problem answers every generation route shares (<c>/v1/images</c>, <c>/v1/jobs</c>,
/// <c>/v1/images/generations</c>, whose filter turns them into OpenAI's error object): a refusal at the queue, a
/// generation that failed, a client that left.</summary>
public static class GenerationProblems
{
    /// <summary>503 + Retry-After: the queue is full or the server is stopping; 429 + Retry-After: this client has its
    /// share of the queue already.</summary>
    public static ProblemHttpResult Refused(HttpContext http, ServingOptions o, EnqueueResult outcome)
    {
        RetryAfter(http, o);
        return outcome switch
        {
            EnqueueResult.ClientLimit => http.Mark(Refusal.ClientLimit, Problem(StatusCodes.Status429TooManyRequests, "Too many queued requests",
                $"this client already has {o.MaxQueuedCostPerClient} row-steps (rows × steps; a guided image is two rows) waiting, its share of the " +
                    $"queue (Serving:MaxQueuedCostPerClient); retry in {o.RetryAfterSeconds} s")),
            EnqueueResult.Closed => http.Mark(Refusal.ShuttingDown, Problem(StatusCodes.Status503ServiceUnavailable, "Shutting down",
                "the server is shutting down and accepts no new requests")),
            _ => http.Mark(Refusal.QueueFull, Problem(StatusCodes.Status503ServiceUnavailable, "Queue full",
                $"all {o.QueueCapacity} queue places are taken; retry in {o.RetryAfterSeconds} s")),
        };
    }

    /// <summary>503 + Retry-After for work refused before the queue (too many class guesses pending).</summary>
    public static ProblemHttpResult Busy(HttpContext http, ServingOptions o, string detail)
    {
        RetryAfter(http, o);
        return http.Mark(Refusal.Busy, Problem(StatusCodes.Status503ServiceUnavailable, "Server busy", detail));
    }

    /// <summary>The status of a request whose sampling turned NaN or infinite: the request was valid, but its settings are
    /// numerically unstable for the model (a client can change them; retrying the same request fails the same way).</summary>
    public const int NonFiniteStatus = StatusCodes.Status422UnprocessableEntity;

    /// <summary>A request that was accepted and did not finish: 504 past <c>Serving:RequestTimeout</c>, 503 + Retry-After
    /// when the server stopped first, 422 when its sampling turned non-finite (the detail names its sampler settings),
    /// 500 for an error of the server's own.</summary>
    public static ProblemHttpResult Failed(HttpContext http, ServingOptions o, GenerationFailure? failure, string detail)
    {
        if (failure == GenerationFailure.ShuttingDown) RetryAfter(http, o);
        return failure switch
        {
            GenerationFailure.Timeout => Problem(StatusCodes.Status504GatewayTimeout, "Generation timed out", detail),
            GenerationFailure.ShuttingDown => Problem(StatusCodes.Status503ServiceUnavailable, "Shutting down", detail),
            GenerationFailure.NonFinite => Problem(NonFiniteStatus, "Sampling diverged", detail),
            _ => Problem(StatusCodes.Status500InternalServerError, "Generation failed", detail),
        };
    }

    /// <summary>The client has gone (nobody reads this answer; it is logged and counted). 499 is nginx's "client closed request".</summary>
    public static ProblemHttpResult ClientClosed(string what) => Problem(499, "Client closed request", $"the client disconnected; {what}");

    private static ProblemHttpResult Problem(int status, string title, string detail) => TypedResults.Problem(detail: detail, statusCode: status, title: title);

    private static void RetryAfter(HttpContext http, ServingOptions o) =>
        http.Response.Headers.RetryAfter = o.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture);
}
