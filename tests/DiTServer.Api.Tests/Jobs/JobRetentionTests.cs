using DiTServer.Api.Jobs;
using DiTServer.Api.Tenants;
using DiTServer.Core.Imaging;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace DiTServer.Api.Tests;

/// <summary>Finished jobs are forgotten after Jobs:ResultTtl, and the oldest first when over Jobs:MaxResults or
/// Jobs:MaxResultBytes. No model: the jobs are completed by hand, and time is a manual clock.</summary>
public sealed class JobRetentionTests
{
    private sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private readonly ManualClock clock = new();

    private JobStore Store(JobOptions options) => new(new Scheduler(new ServingOptions { QueueCapacity = 100 }), Options.Create(options),
        Options.Create(new ServingOptions()),
        clock, NullLogger<JobStore>.Instance);

    private static GenerationParameters Parameters => new(0, 1, new SamplingOptions { Steps = 2, Seed = 1 });

    /// <summary>Creates a job and completes it with one image of <paramref name="bytes"/> PNG bytes (and 12 raw pixel bytes).</summary>
    private async Task<Job> Finished(JobStore store, int bytes, Caller? caller = null)
    {
        var (job, outcome) = store.Create(Parameters, caller: caller);
        Assert.Equal(EnqueueResult.Accepted, outcome);
        var image = new GeneratedImage(0, 1, 0, "zero", new byte[12], 2, 2, 3, new byte[bytes]);
        job!.Request.Succeed(new GenerationResult([image], TimeSpan.Zero, TimeSpan.Zero));
        await job.Finished;
        clock.Now += TimeSpan.FromSeconds(1); // distinct finish times: "oldest" is well defined
        store.Sweep();
        return job;
    }

    [Fact]
    public async Task Oldest_finished_jobs_are_evicted_beyond_max_results()
    {
        var store = Store(new JobOptions { MaxResults = 2 });
        var jobs = new List<Job>();
        for (int i = 0; i < 3; i++) jobs.Add(await Finished(store, 100));
        Assert.Null(store.Get(jobs[0].Id));
        Assert.NotNull(store.Get(jobs[1].Id));
        Assert.NotNull(store.Get(jobs[2].Id));
        Assert.Equal(2, store.Count);
    }

    [Fact]
    public async Task Oldest_results_are_evicted_beyond_max_result_bytes_but_the_newest_is_kept()
    {
        var store = Store(new JobOptions { MaxResultBytes = 2500 });
        var a = await Finished(store, 1000);
        var b = await Finished(store, 1000);
        Assert.Equal(2024, store.RetainedBytes);
        var c = await Finished(store, 1000);
        Assert.Null(store.Get(a.Id));
        Assert.NotNull(store.Get(b.Id));
        Assert.NotNull(store.Get(c.Id));
        Assert.True(store.RetainedBytes <= 2500, store.RetainedBytes.ToString());

        var huge = await Finished(store, 10_000);
        Assert.NotNull(store.Get(huge.Id)); // alone over the limit, but the newest: kept so it can be fetched once
        Assert.Equal(1, store.Count);
    }

    [Fact]
    public async Task Finished_jobs_expire_after_the_ttl_but_unfinished_ones_never_do()
    {
        var store = Store(new JobOptions { ResultTtl = TimeSpan.FromMinutes(1) });
        var done = await Finished(store, 10);
        var (running, _) = store.Create(Parameters);
        clock.Now += TimeSpan.FromSeconds(58);
        Assert.NotNull(store.Get(done.Id));
        clock.Now += TimeSpan.FromSeconds(2);
        Assert.Null(store.Get(done.Id));
        clock.Now += TimeSpan.FromHours(1);
        Assert.NotNull(store.Get(running!.Id));
        Assert.Equal("queued", running.Snapshot().State.Name());
    }

    [Fact]
    public async Task Cancelled_and_failed_jobs_count_toward_max_results()
    {
        var store = Store(new JobOptions { MaxResults = 1 });
        var (cancelled, _) = store.Create(Parameters);
        Assert.True(cancelled!.Cancel());
        Assert.False(cancelled.Cancel());
        await cancelled.Finished;
        clock.Now += TimeSpan.FromSeconds(1);
        var (failed, _) = store.Create(Parameters);
        failed!.Request.Fail(new GenerationException(GenerationFailure.Timeout, "too slow"));
        await failed.Finished;
        Assert.Equal(JobState.Failed, failed.Snapshot().State);
        Assert.Equal("too slow", failed.Snapshot().Error);
        store.Sweep();
        Assert.Null(store.Get(cancelled.Id));
        Assert.NotNull(store.Get(failed.Id));
    }

    private static Caller Client(string name, int? maxResults = null) =>
        new($"tenant:{name}", ClientShare.Default, maxResults is null ? null : new TenantOptions { Name = name, MaxResults = maxResults });

    [Fact]
    public async Task A_client_making_many_results_evicts_its_own_never_those_of_a_client_holding_fewer()
    {
        var store = Store(new JobOptions { MaxResults = 4 });
        var other = await Finished(store, 100, Client("other"));
        var flood = new List<Job>();
        for (int i = 0; i < 10; i++) flood.Add(await Finished(store, 100, Client("flood")));
        Assert.NotNull(store.Get(other.Id));
        Assert.Equal(4, store.Count);
        Assert.All(flood[..7], j => Assert.Null(store.Get(j.Id)));
        Assert.All(flood[7..], j => Assert.NotNull(store.Get(j.Id)));
    }

    [Fact]
    public async Task Over_the_byte_pool_the_client_holding_the_most_bytes_loses_its_oldest()
    {
        var store = Store(new JobOptions { MaxResultBytes = 5000 });
        var small = await Finished(store, 500, Client("small"));
        var big = new List<Job>();
        for (int i = 0; i < 5; i++) big.Add(await Finished(store, 1500, Client("big")));
        Assert.NotNull(store.Get(small.Id));
        Assert.Null(store.Get(big[0].Id));
        Assert.NotNull(store.Get(big[^1].Id));
        Assert.True(store.RetainedBytes <= 5000, store.RetainedBytes.ToString());
    }

    [Fact]
    public async Task A_clients_share_of_results_evicts_its_own_oldest_even_while_the_pool_has_room()
    {
        var store = Store(new JobOptions { MaxResults = 100, MaxResultsPerClient = 2 });
        var jobs = new List<Job>();
        for (int i = 0; i < 3; i++) jobs.Add(await Finished(store, 100, Client("a")));
        var tenant = new List<Job>();
        for (int i = 0; i < 5; i++) tenant.Add(await Finished(store, 100, Client("gold", maxResults: 4))); // its own limit
        Assert.Null(store.Get(jobs[0].Id));
        Assert.NotNull(store.Get(jobs[1].Id));
        Assert.Null(store.Get(tenant[0].Id));
        Assert.Equal(2 + 4, store.Count);
    }
}
