using System.Collections.Concurrent;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Options;

namespace DiTServer.Api.Jobs;

/// <summary>All known jobs by id: creates them (into the engine's queue), finds them, and forgets finished ones
/// after <see cref="JobOptions.ResultTtl"/> or when more than <see cref="JobOptions.MaxResults"/> or
/// <see cref="JobOptions.MaxResultBytes"/> are kept (oldest finished first).</summary>
/// <remarks>With a shared store (<see cref="ISharedJobs"/>) each new job is also published for the other replicas.
/// <para>Not <c>IMemoryCache</c> with a <c>SizeLimit</c>, on purpose: these rules are tested and a cache would lose them.
/// Running jobs are never evicted (a cache may drop any entry under pressure); eviction is oldest-finished first,
/// under two limits at once (count and bytes, where a cache has one size); the newest result always survives one fetch;
/// and expiry follows the injected <see cref="TimeProvider"/>, which the retention tests drive by hand.</para></remarks>
public sealed class JobStore(Scheduler scheduler, IOptions<JobOptions> jobOptions, IOptions<ServingOptions> servingOptions,
    TimeProvider time, ILogger<JobStore> logger, ISharedJobs? shared = null)
{
    private readonly ConcurrentDictionary<string, Job> jobs = new();
    private readonly Lock sweepGate = new();
    private readonly JobOptions options = jobOptions.Value;

    public int Count => jobs.Count;

    /// <summary>Bytes held by finished results now.</summary>
    public long RetainedBytes => jobs.Values.Sum(j => j.ResultBytes);

    /// <summary>Queues a new job; null with the queue's answer when it was refused (full, or shutting down).</summary>
    /// <param name="previewEvery">0 for no previews, else a preview event every that many steps (validated by the caller).</param>
    /// <param name="client">Who asked (<see cref="GenerationRequest.Client"/>), for per-client limits and fair sharing.</param>
    public (Job? Job, EnqueueResult Outcome) Create(GenerationParameters parameters, int previewEvery = 0, string client = "anonymous")
    {
        Sweep();
        var job = new Job(NewId(), parameters, servingOptions.Value.RequestTimeout, time, previewEvery, options.PreviewMaxSize, client);
        var outcome = scheduler.TryAdd(job.Request);
        if (outcome != EnqueueResult.Accepted) return (null, outcome);
        jobs[job.Id] = job;
        shared?.Track(job);
        _ = Follow(job);
        return (job, outcome);
    }

    public Job? Get(string id)
    {
        Sweep();
        return jobs.TryGetValue(id, out var job) ? job : null;
    }

    /// <summary>Forgets a finished job (DELETE of a finished job); false when unknown or not finished.</summary>
    public bool Remove(Job job)
    {
        if (!job.Snapshot().State.IsFinal() || !jobs.TryRemove(new KeyValuePair<string, Job>(job.Id, job))) return false;
        _ = shared?.ForgetAsync(job.Id); // forgotten everywhere, as DELETE promises
        return true;
    }

    /// <summary>1-based place in the queue while queued, else null.</summary>
    public long? PositionOf(Job job) => scheduler.PositionOf(job.Request);

    /// <summary>Drops expired finished jobs, then the oldest finished ones while over the count or byte limit.
    /// The most recently finished job is never evicted for size, so a result can always be fetched once.</summary>
    public void Sweep()
    {
        lock (sweepGate)
        {
            var now = time.GetUtcNow();
            var done = jobs.Values
                .Select(j => (Job: j, Status: j.Snapshot()))
                .Where(x => x.Status.State.IsFinal())
                .OrderBy(x => x.Status.FinishedAt)
                .ToList();
            long bytes = done.Sum(x => x.Job.ResultBytes);
            int count = done.Count;
            for (int i = 0; i < done.Count; i++)
            {
                var (job, status) = done[i];
                bool expired = now - status.FinishedAt >= options.ResultTtl;
                bool over = i < done.Count - 1 && (count > options.MaxResults || bytes > options.MaxResultBytes);
                if (!expired && !over) continue;
                if (!jobs.TryRemove(new KeyValuePair<string, Job>(job.Id, job))) continue;
                count--;
                bytes -= job.ResultBytes;
                logger.LogDebug("Job {JobId} forgotten ({Reason})", job.Id, expired ? "expired" : "evicted");
            }
        }
    }

    private async Task Follow(Job job)
    {
        await job.RunAsync();
        Sweep();
    }

    private static string NewId() => "job_" + Guid.NewGuid().ToString("N");
}
