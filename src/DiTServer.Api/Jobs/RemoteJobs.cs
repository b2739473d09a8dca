using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json;

namespace DiTServer.Api.Jobs;

/// <summary>The <c>/v1/jobs/{id}</c> answers for a job another replica runs, from what it published in the shared store
/// (<see cref="ISharedJobs"/>): the same status JSON, event types and result bytes as on the owner, except that previews
/// are not shared and the status is polled (every <see cref="Poll"/>).</summary>
public static class RemoteJobs
{
    public static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(250);

    /// <summary>How long a DELETE waits for the owner to record the cancellation before answering with what it knows.</summary>
    public static readonly TimeSpan CancelWait = TimeSpan.FromSeconds(3);

    private static bool IsFinal(string state) => state is "succeeded" or "failed" or "cancelled";

    private static string EventType(string state) => state switch
    {
        "queued" => "queued",
        "running" => "progress",
        "succeeded" => "done",
        "failed" => "failed",
        _ => "cancelled",
    };

    /// <summary>The job's status events until the final one (or until it expires from the store, or the client leaves).</summary>
    public static async IAsyncEnumerable<SseItem<string>> Stream(string id, ISharedJobs shared, [EnumeratorCancellation] CancellationToken aborted)
    {
        string? last = null;
        while (!aborted.IsCancellationRequested)
        {
            SharedJob? job;
            try { job = await shared.GetAsync(id, aborted); }
            catch (OperationCanceledException) { yield break; }
            catch (SharedStoreUnavailableException) { yield break; } // the stream has begun: ending it is all that is left to say
            if (job is null) yield break;
            var s = job.Status;
            var seen = $"{s.State}/{s.Step}/{s.QueuePosition}";
            if (seen != last)
            {
                last = seen;
                yield return new SseItem<string>(JsonSerializer.Serialize(s, WireJson.Options), EventType(s.State));
                if (IsFinal(s.State)) yield break;
            }
            try { await Task.Delay(Poll, aborted); }
            catch (OperationCanceledException) { yield break; }
        }
    }

    public static async Task<Results<FileContentHttpResult, Ok<ImagesResponse>, ValidationProblem, ProblemHttpResult>> Result(
        string id, int? index, HttpContext http, LoadedModel model, ISharedJobs shared)
    {
        if (await shared.GetAsync(id, http.RequestAborted) is not { } job) return JobsEndpoints.NotFound(id);
        if (!ImageResults.Negotiate(http.Request, out bool json)) return ImageResults.NotAcceptable();
        var s = job.Status;
        if (s.State != "succeeded" || job.Images.Count == 0)
            return JobsEndpoints.NoResult(id, s.State, s.QueuePosition, s.Step, s.TotalSteps, s.Error);
        var images = job.Images;
        if (index is { } i && (i < 0 || i >= images.Count)) return ImageResults.BadIndex(i, images.Count);
        ImageResults.ReproductionHeaders(http.Response, s.Parameters?.Seed ?? images[0].Seed, s.Parameters?.ClassLabel ?? images[0].ClassLabel);
        if (json)
        {
            var items = new List<ImageItem>();
            IReadOnlyList<SharedImage> chosen = index is { } one ? [images[one]] : images;
            foreach (var image in chosen)
            {
                var bytes = await shared.GetPngAsync(id, image.Index, http.RequestAborted);
                if (bytes is null) return JobsEndpoints.NotFound(id); // expired between the two reads
                // batch_size is the job's image count: with seed and index it reproduces the image (see ImageItem).
                items.Add(new ImageItem(image.Index, image.Seed, images.Count, image.ClassLabel, image.ClassName, Convert.ToBase64String(bytes)));
            }
            return TypedResults.Ok(new ImagesResponse(model.Name, items));
        }
        var png = await shared.GetPngAsync(id, index ?? (images.Count == 1 ? 0 : null), http.RequestAborted);
        return png is null ? JobsEndpoints.NotFound(id) : TypedResults.File(png, "image/png");
    }

    /// <summary>Unfinished: the owner is asked to cancel it, 202 with its status once cancelled (or as last known after
    /// <see cref="CancelWait"/>). Finished: forgotten everywhere, 204.</summary>
    public static async Task<Results<Accepted<JobResponse>, NoContent, ProblemHttpResult>> Delete(string id, ISharedJobs shared)
    {
        if (await shared.GetAsync(id) is not { } job) return JobsEndpoints.NotFound(id);
        if (IsFinal(job.Status.State))
        {
            await shared.RequestAsync(id, SharedCommand.Forget);
            await shared.ForgetAsync(id);
            return TypedResults.NoContent();
        }
        await shared.RequestAsync(id, SharedCommand.Cancel);
        var deadline = DateTime.UtcNow + CancelWait;
        var latest = job;
        while (!IsFinal(latest.Status.State) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(Poll / 5);
            try { latest = await shared.GetAsync(id) ?? latest; }
            catch (SharedStoreUnavailableException) { break; } // the cancel request went out: answer with what is known
        }
        return TypedResults.Accepted($"/v1/jobs/{id}", latest.Status);
    }
}
