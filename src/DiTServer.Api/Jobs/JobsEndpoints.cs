using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json;
using DiTServer.Api.Observability;
using DiTServer.Api.Tenants;
using Microsoft.AspNetCore.Mvc;

namespace DiTServer.Api.Jobs;

/// <summary><c>/v1/jobs</c>: create a generation job (same body as <c>POST /v1/images</c>), read its state, follow it
/// as Server-Sent Events, fetch its result, cancel or forget it.</summary>
public static class JobsEndpoints
{
    public const string GetJobName = "GetJob";

    /// <summary>While a job is queued, its event stream re-checks the queue position this often.</summary>
    private static readonly TimeSpan PositionPoll = TimeSpan.FromMilliseconds(500);

    public static WebApplication MapJobsApi(this WebApplication app)
    {
        var maxBody = app.Services.GetRequiredService<IOptions<ServingOptions>>().Value.TransportBodyLimit;
        // A tenant's key first (401); then, with SharedStore:Redis unreachable, new jobs and lookups beyond this replica's
        // own jobs answer 503 at once.
        var group = app.MapGroup("/v1/jobs").WithTags("Jobs").RequireTenant().WithSharedStoreGuard();
        group.MapPost("/", Create).WithName("CreateJob").WithGenerationMetrics("/v1/jobs")
            .WithSummary("Queue a generation job; answers 202 at once with its id and Location")
            .WithDescription("The body is the body of POST /v1/images, plus preview_every (0 or absent: no previews; k in 1..steps: a preview event with " +
                "small PNGs of the predicted images after every k-th step but the last). Follow the job with GET /v1/jobs/{id} or its events; fetch the " +
                "images from /v1/jobs/{id}/result.")
            .WithMetadata(new RequestSizeLimitAttribute(maxBody))
            .WithJsonBody<JobRequest>(JobRequest.Example, "What to generate (the body of POST /v1/images) and how often to send previews.",
                examples: ImageRequest.SamplerExamples)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status408RequestTimeout)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status415UnsupportedMediaType)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        group.MapGet("/{id}", Get).WithName(GetJobName)
            .WithSummary("A job's state: queued (with queue_position), running (step of total_steps), succeeded, failed (error) or cancelled")
            .ProducesProblem(StatusCodes.Status404NotFound);
        group.MapGet("/{id}/events", Events).WithName("GetJobEvents")
            .WithSummary("Server-Sent Events: the current state first, then queued, progress (every step), preview (every preview_every steps, if asked), " +
                "and one final done, failed or cancelled; then the stream ends")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream")
            .ProducesProblem(StatusCodes.Status404NotFound);
        group.MapGet("/{id}/result", Result).WithName("GetJobResult")
            .WithSummary("The finished job's images: PNG (a grid for several; ?index=i for one) or JSON by Accept, as POST /v1/images")
            .Produces<ImagesResponse>(StatusCodes.Status200OK, "application/json")
            .Produces(StatusCodes.Status200OK, contentType: "image/png")
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status406NotAcceptable)
            .ProducesProblem(StatusCodes.Status409Conflict);
        group.MapDelete("/{id}", Delete).WithName("DeleteJob")
            .WithSummary("Cancel a queued or running job (202; its rows leave the batch at the next step), or forget a finished one (204)")
            .ProducesProblem(StatusCodes.Status404NotFound);
        return app;
    }

    private static async Task<Results<Accepted<JobResponse>, ValidationProblem, ProblemHttpResult>> Create(
        HttpContext http, LoadedModel model, JobStore store, IOptions<ServingOptions> serving, GenerationMetrics outcomes)
    {
        var o = serving.Value;
        int previewEvery = 0;
        var parsed = await ImageBody.ReadAsync(http.Request, model, o, (body, limits) =>
        {
            var request = JobRequestParser.Parse(body, limits, PreviewRenderer.Unsupported(model), out var errors);
            previewEvery = request?.PreviewEvery ?? 0;
            return (request?.Parameters, errors);
        });
        if (parsed.Unsupported is { } unsupported) return unsupported;
        if (parsed.Invalid is { } invalid) return invalid;
        var (job, outcome) = store.Create(parsed.Parameters!, previewEvery, ClientIdentity.Of(http));
        if (job is null) return GenerationProblems.Refused(http, o, outcome);
        outcomes.Track(http, job.Request);
        return TypedResults.Accepted($"/v1/jobs/{job.Id}", Describe(job, store, model));
    }

    // Each handler looks in this server's jobs first, then (with SharedStore:Redis) in the ones other replicas published.
    // A final state is told only once the shared store has it too, so a follow-up call on another replica finds it.
    private static async Task<Results<Ok<JobResponse>, ProblemHttpResult>> Get(string id, HttpContext http, JobStore store, LoadedModel model,
        ISharedJobs shared)
    {
        if (store.Get(id) is { } job)
        {
            if (!Owns(http, job.Owner.Client)) return NotFound(id);
            if (job.Snapshot().State.IsFinal()) await shared.WhenPublished(id);
            return TypedResults.Ok(Describe(job, store, model));
        }
        return await Remote(id, http, shared) is { } remote ? TypedResults.Ok(remote.Status) : NotFound(id);
    }

    /// <summary>Whether the caller may see a job created by <paramref name="owner"/>: with tenants, only the tenant that
    /// created it (any other gets the 404 of an unknown id, on every replica); without, whoever holds the unguessable id.</summary>
    private static bool Owns(HttpContext http, string? owner) =>
        http.RequestServices.GetRequiredService<TenantDirectory>() is not { Enabled: true } || owner == ClientIdentity.Of(http).Client;

    /// <summary>Another replica's job, when the caller may see it.</summary>
    private static async Task<SharedJob?> Remote(string id, HttpContext http, ISharedJobs shared) =>
        await shared.GetAsync(id) is { } remote && Owns(http, remote.Client) ? remote : null;

    private static async Task<Results<ServerSentEventsResult<string>, ProblemHttpResult>> Events(string id, HttpContext http, JobStore store,
        ISharedJobs shared)
    {
        if (store.Get(id) is { } job)
            return Owns(http, job.Owner.Client) ? TypedResults.ServerSentEvents(Stream(job, store, shared, http.RequestAborted)) : NotFound(id);
        if (await Remote(id, http, shared) is not null) return TypedResults.ServerSentEvents(RemoteJobs.Stream(id, shared, http.RequestAborted));
        return NotFound(id);
    }

    /// <summary>The job's events until the final one. When the client leaves, the stream ends quietly and the
    /// job goes on (an event stream only watches; DELETE cancels).</summary>
    private static async IAsyncEnumerable<SseItem<string>> Stream(Job job, JobStore store, ISharedJobs shared,
        [EnumeratorCancellation] CancellationToken aborted)
    {
        using var subscription = job.Subscribe();
        long? lastPosition = null;
        while (true)
        {
            var (next, gone) = await Next(subscription, job, aborted);
            if (gone) yield break;
            if (next is null)
            {
                // No change for a while: while queued, the place in the queue may still have moved.
                var snapshot = job.Snapshot();
                var position = store.PositionOf(job);
                if (snapshot.State != JobState.Queued || position == lastPosition) continue;
                next = JobEvent.For(snapshot);
            }
            if (next.Preview is { } preview)
            {
                yield return new SseItem<string>(JsonSerializer.Serialize(JobPreviewResponse.From(job, preview), WireJson.Options), next.Type);
                continue;
            }
            if (next.IsFinal) await shared.WhenPublished(job.Id);
            var data = JobResponse.From(job, next.Status, store.PositionOf(job), null);
            if (next.Type == "queued") lastPosition = data.QueuePosition;
            yield return new SseItem<string>(JsonSerializer.Serialize(data, WireJson.Options), next.Type);
            if (next.IsFinal) yield break;
        }
    }

    /// <summary>The next event, or null after <see cref="PositionPoll"/> without one while queued; gone = the client
    /// left or the stream is over.</summary>
    private static async Task<(JobEvent? Event, bool Gone)> Next(Job.Subscription subscription, Job job, CancellationToken aborted)
    {
        var reader = subscription.Events;
        if (reader.TryRead(out var ready)) return (ready, false);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        if (job.Snapshot().State == JobState.Queued) wait.CancelAfter(PositionPoll);
        try
        {
            if (!await reader.WaitToReadAsync(wait.Token)) return (null, true);
            return reader.TryRead(out var e) ? (e, false) : (null, false);
        }
        catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
        {
            return (null, false);
        }
        catch (OperationCanceledException)
        {
            return (null, true);
        }
    }

    private static async Task<Results<FileContentHttpResult, Ok<ImagesResponse>, ValidationProblem, ProblemHttpResult>> Result(
        string id, int? index, HttpContext http, JobStore store, LoadedModel model, ISharedJobs shared)
    {
        if (store.Get(id) is not { } job)
            return await Remote(id, http, shared) is null ? NotFound(id) : await RemoteJobs.Result(id, index, http, model, shared);
        if (!Owns(http, job.Owner.Client)) return NotFound(id);
        if (!ImageResults.Negotiate(http.Request, out bool json)) return ImageResults.NotAcceptable();
        var s = job.Snapshot();
        if (s.State != JobState.Succeeded || job.Result is not { } result)
            return NoResult(id, s.State.Name(), store.PositionOf(job), s.Step, s.TotalSteps, s.Error);
        ImageResults.ReproductionHeaders(http.Response, job.Parameters.Sampling.Seed, job.Parameters.ClassLabel);
        var images = result.Images;
        if (index is { } i)
        {
            if (i < 0 || i >= images.Count) return ImageResults.BadIndex(i, images.Count);
            images = [images[i]];
        }
        if (json) return ImageResults.Json(model, images, result.Images.Count);
        return await ImageResults.Png(model, job.Parameters, images);
    }

    private static async Task<Results<Accepted<JobResponse>, NoContent, ProblemHttpResult>> Delete(string id, HttpContext http, JobStore store,
        LoadedModel model, ISharedJobs shared)
    {
        if (store.Get(id) is not { } job) return await Remote(id, http, shared) is null ? NotFound(id) : await RemoteJobs.Delete(id, shared);
        if (!Owns(http, job.Owner.Client)) return NotFound(id);
        if (job.Cancel()) return TypedResults.Accepted($"/v1/jobs/{job.Id}", Describe(job, store, model));
        store.Remove(job);
        return TypedResults.NoContent();
    }

    public static JobResponse Describe(Job job, JobStore store, LoadedModel model) =>
        JobResponse.From(job, job.Snapshot(), store.PositionOf(job), model);

    /// <summary>The 409 for a result asked of a job that has none (yet), by its state's wire name.</summary>
    public static ProblemHttpResult NoResult(string id, string state, long? place, int step, int totalSteps, string? error)
    {
        var detail = state switch
        {
            "queued" => $"job {id} is still queued (place {place}); follow /v1/jobs/{id}/events or poll /v1/jobs/{id}",
            "running" => $"job {id} is running (step {step} of {totalSteps}); follow /v1/jobs/{id}/events or poll /v1/jobs/{id}",
            "failed" => $"job {id} failed and has no result: {error}",
            "succeeded" => $"job {id} succeeded but its images are not in the shared store", // another replica's job
            _ => $"job {id} was cancelled and has no result",
        };
        return TypedResults.Problem(detail: detail, statusCode: StatusCodes.Status409Conflict, title: "Job has no result");
    }

    public static ProblemHttpResult NotFound(string id) => TypedResults.Problem(
        detail: $"there is no job '{id}': the id is unknown, or the job finished and was forgotten (Jobs:ResultTtl, Jobs:MaxResults, Jobs:MaxResultBytes)",
        statusCode: StatusCodes.Status404NotFound, title: "Job not found");
}
