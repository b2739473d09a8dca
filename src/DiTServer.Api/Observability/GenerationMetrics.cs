using Prometheus;

namespace DiTServer.Api.Observability;

/// <summary>The one place where generation requests are counted and timed, for every route that generates
/// (<c>POST /v1/images</c>, <c>POST /v1/jobs</c>, <c>POST /v1/images/generations</c>), labelled by route and model.</summary>
/// <remarks>A request ends in one of two ways, and each is recorded once: refused before it reached the queue (the
/// route's filter reads the error answer), or finished by the engine (<see cref="Track"/> watches its completion,
/// which for a job comes long after the 202). Before, only <c>/v1/images</c> was counted, by hand in its handler.</remarks>
public sealed class GenerationMetrics(LoadedModel model)
{
    private static readonly Counter Requests = Metrics.CreateCounter("dit_requests_total",
        "Generation requests by route, model, outcome (ok, bad_request, unauthorized, not_acceptable, client_limit, queue_full, store_unavailable, " +
        "busy, shutting_down, timeout, cancelled, diverged, error) and tenant (a configured tenant's name, or anonymous)",
        new CounterConfiguration { LabelNames = ["route", "model", "outcome", "tenant"] });
    private static readonly Histogram Latency = Metrics.CreateHistogram("dit_request_duration_seconds",
        "Time from enqueue to PNGs ready, successful generation requests, by route and model",
        new HistogramConfiguration { LabelNames = ["route", "model"], Buckets = Histogram.ExponentialBuckets(0.005, 2, 18) });

    private const string RouteKey = "dit.metrics.route", TrackedKey = "dit.metrics.tracked";

    /// <summary>Counts the route's requests: refusals from its answer, the rest through <see cref="Track"/>.</summary>
    public static RouteHandlerBuilder WithGenerationMetrics(RouteHandlerBuilder route, string name) =>
        route.AddEndpointFilter(async (context, next) =>
        {
            var http = context.HttpContext;
            http.Items[RouteKey] = name;
            var result = await next(context);
            if (!http.Items.ContainsKey(TrackedKey))
                http.RequestServices.GetRequiredService<GenerationMetrics>().Refused(name, result, RefusalMark.Of(http),
                    Tenants.ClientIdentity.Of(http).MetricLabel);
            return result;
        });

    /// <summary>Records the request's outcome and time when the engine completes it; call once it is queued.</summary>
    public void Track(HttpContext http, GenerationRequest request)
    {
        http.Items[TrackedKey] = true;
        var route = http.Items[RouteKey] as string ?? http.Request.Path.Value ?? "unknown";
        string modelName = model.Name, tenant = Tenants.ClientIdentity.Of(http).MetricLabel;
        _ = request.Completion.ContinueWith(t =>
        {
            if (t.IsCompletedSuccessfully) Latency.WithLabels(route, modelName).Observe(t.Result.Total.TotalSeconds);
            Requests.WithLabels(route, modelName, OutcomeOf(t), tenant).Inc();
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>A refusal marked by whoever wrote it (<see cref="Refusal"/>) is labelled by its reason; an unmarked answer is the
    /// request's own fault (4xx) or an error.</summary>
    private void Refused(string route, object? result, Refusal? why, string tenant)
    {
        var inner = result is INestedHttpResult nested ? nested.Result : result;
        int status = (inner as IStatusCodeHttpResult)?.StatusCode ?? StatusCodes.Status200OK;
        string outcome = why?.Label() ?? status switch
        {
            < 400 => "ok", // not reached: a success is always a queued request
            StatusCodes.Status401Unauthorized => "unauthorized",
            StatusCodes.Status406NotAcceptable => "not_acceptable",
            < 500 => "bad_request",
            _ => "error",
        };
        Requests.WithLabels(route, model.Name, outcome, tenant).Inc();
    }

    private static string OutcomeOf(Task<GenerationResult> t) =>
        t.IsCompletedSuccessfully ? "ok"
        : t.IsCanceled || t.Exception?.InnerException is OperationCanceledException ? "cancelled"
        : (t.Exception?.InnerException as GenerationException)?.Failure switch
        {
            GenerationFailure.Timeout => "timeout",
            GenerationFailure.ShuttingDown => "shutting_down",
            GenerationFailure.NonFinite => "diverged",
            _ => "error",
        };
}

public static class GenerationMetricsExtensions
{
    /// <summary>Counts and times this generation route under <c>route="<paramref name="name"/>"</c>.</summary>
    public static RouteHandlerBuilder WithGenerationMetrics(this RouteHandlerBuilder route, string name) =>
        GenerationMetrics.WithGenerationMetrics(route, name);
}
