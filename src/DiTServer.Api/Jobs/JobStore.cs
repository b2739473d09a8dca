using System.Collections.Concurrent;
using DiTServer.Api.Tenants;

namespace DiTServer.Api.Jobs;

/// <summary>All known jobs by id: creates them (into the engine's queue), finds them, and forgets finished ones
/// after <see cref="JobOptions.ResultTtl"/>, or when their client holds more than its share, or when more than
/// <see cref="JobOptions.MaxResults"/> or <see cref="JobOptions.MaxResultBytes"/> are kept (see <see cref="Sweep"/>).</summary>
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
    /// <param name="caller">Who asked: the job's owner, for per-client limits, fair sharing and the result share.</param>
    public (Job? Job, EnqueueResult Outcome) Create(GenerationParameters parameters, int previewEvery = 0, Caller? caller = null)
    {
        Sweep();
        var job = new Job(NewId(), parameters, servingOptions.Value.RequestTimeout, time, previewEvery, options.PreviewMaxSize, caller);
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

    /// <summary>Drops expired finished jobs; then each client's oldest finished ones while it holds more than its share
    /// (<see cref="JobOptions.EffectiveMaxResultsPerClient"/>, or its tenant's); then, while the whole pool is over the count
    /// or byte limit, the oldest of the client holding the most, so that a client's new results evict its own old ones and
    /// never those of a client with fewer. A client's newest result is never evicted for size, so each result can be
    /// fetched at least once.</summary>
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
            var kept = new List<Job>(done.Count);
            foreach (var (job, status) in done)
                if (now - status.FinishedAt < options.ResultTtl || !Forget(job, "expired")) kept.Add(job);
            // Oldest first per client; each client's last entry is its newest, which stays.
            var byClient = kept.GroupBy(j => j.Owner.Client).ToDictionary(g => g.Key, g => g.ToList());
            foreach (var (_, held) in byClient)
            {
                int limit = held[0].Owner.Tenant?.MaxResults ?? options.EffectiveMaxResultsPerClient;
                while (held.Count > limit && held.Count > 1) Evict(held, "over its client's share");
            }
            while (true)
            {
                int count = byClient.Values.Sum(h => h.Count);
                long bytes = byClient.Values.Sum(h => h.Sum(j => j.ResultBytes));
                bool overCount = count > options.MaxResults, overBytes = bytes > options.MaxResultBytes;
                if (!overCount && !overBytes) break;
                var largest = byClient.Values.Where(h => h.Count > 1)
                    .MaxBy(h => overCount ? h.Count : h.Sum(j => j.ResultBytes));
                if (largest is null) break; // every client holds only its newest: kept
                Evict(largest, "over the pool's limit");
            }
        }
    }

    private void Evict(List<Job> held, string reason)
    {
        Forget(held[0], reason);
        held.RemoveAt(0);
    }

    private bool Forget(Job job, string reason)
    {
        if (!jobs.TryRemove(new KeyValuePair<string, Job>(job.Id, job))) return false;
        logger.LogDebug("Job {JobId} of {Client} forgotten ({Reason})", job.Id, job.Owner.Client, reason);
        return true;
    }

    private async Task Follow(Job job)
    {
        await job.RunAsync();
        Sweep();
    }

    private static string NewId() => "job_" + Guid.NewGuid().ToString("N");
}
