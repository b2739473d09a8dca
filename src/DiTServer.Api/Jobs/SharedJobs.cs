using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Text.Json;
using StackExchange.Redis;

namespace DiTServer.Api.Jobs;

/// <summary>Where jobs are visible to every replica (configuration section <c>SharedStore</c>). Off by default: a job is
/// then reachable only on the server that accepted it (the Kubernetes manifests route clients back to it instead).</summary>
public sealed class SharedStoreOptions
{
    public const string Section = "SharedStore";

    /// <summary>StackExchange.Redis configuration, e.g. <c>redis:6379</c> or <c>redis:6379,password=…</c>; empty: off.</summary>
    public string? Redis { get; set; }

    /// <summary>Prefix of every key and channel, so several deployments can share one Redis.</summary>
    [RegularExpression(@"^[A-Za-z0-9:._-]{1,64}$", ErrorMessage = "SharedStore:KeyPrefix must be 1-64 characters of letters, digits and :._-")]
    public string KeyPrefix { get; set; } = "dit:";

    /// <summary>How long one store call may take (connect, sync and async timeouts), in ms, unless the Redis string sets its
    /// own (<c>connectTimeout=</c> etc.). While Redis is down, calls fail at once (no backlog) and the job routes answer
    /// 503; this bounds the case where the connection has not yet noticed.</summary>
    [Range(50, 60_000, ErrorMessage = "SharedStore:TimeoutMs must be in 50..60000")]
    public int TimeoutMs { get; set; } = 1000;
}

/// <summary>A job as another replica sees it: its last published status, and once it succeeded, its images' metadata
/// (the PNG bytes are fetched one by one with <see cref="ISharedJobs.GetPngAsync"/>), and the client that created it
/// (with tenants, only that tenant may see it on any replica).</summary>
public sealed record SharedJob(JobResponse Status, IReadOnlyList<SharedImage> Images, string? Client = null);

public sealed record SharedImage(
    int Index,
    long Seed,
    int ClassLabel,
    string ClassName);

/// <summary>The jobs of all replicas. The replica that accepted a job runs it and publishes its status and result; any
/// replica reads them, and asks the owner to cancel or forget it.</summary>
public interface ISharedJobs
{
    bool Enabled { get; }

    /// <summary>The store answers now (always true when it is off).</summary>
    bool Reachable { get; }

    /// <summary>Publishes this replica's new job and follows it to its end (status at each change, then the result).</summary>
    void Track(Job job);

    /// <summary>Completes once a finished job's final status and result are in the store (at once when the job is not
    /// tracked), so that an answer that tells a client "finished" is true on every replica by the time it arrives.</summary>
    Task WhenPublished(string id);

    /// <summary>A job published by any replica; null when unknown, expired, or the store is off.</summary>
    /// <exception cref="SharedStoreUnavailableException">The store is configured and cannot be reached.</exception>
    Task<SharedJob?> GetAsync(string id, CancellationToken cancel = default);

    /// <summary>One image's PNG, or with <paramref name="index"/> null the whole answer (the PNG, or the grid of several).</summary>
    /// <exception cref="SharedStoreUnavailableException">The store is configured and cannot be reached.</exception>
    Task<byte[]?> GetPngAsync(string id, int? index, CancellationToken cancel = default);

    /// <summary>Asks the replica that runs the job to cancel it (queued or running) or to forget it (finished).</summary>
    /// <exception cref="SharedStoreUnavailableException">The store is configured and cannot be reached.</exception>
    Task RequestAsync(string id, SharedCommand command);

    /// <summary>Removes the job from the store (the owner forgets its own copy on <see cref="SharedCommand.Forget"/>).</summary>
    Task ForgetAsync(string id);
}

public enum SharedCommand { Cancel, Forget }

/// <summary>The store when <c>SharedStore:Redis</c> is empty: nothing is shared.</summary>
public sealed class NoSharedJobs : ISharedJobs
{
    public bool Enabled => false;
    public bool Reachable => true;
    public void Track(Job job) { }
    public Task WhenPublished(string id) => Task.CompletedTask;
    public Task<SharedJob?> GetAsync(string id, CancellationToken cancel = default) => Task.FromResult<SharedJob?>(null);
    public Task<byte[]?> GetPngAsync(string id, int? index, CancellationToken cancel = default) => Task.FromResult<byte[]?>(null);
    public Task RequestAsync(string id, SharedCommand command) => Task.CompletedTask;
    public Task ForgetAsync(string id) => Task.CompletedTask;
}

/// <summary>Jobs shared through Redis. Each job is one hash (<c>{prefix}job:{id}</c>): <c>status</c> (the JSON of
/// <c>GET /v1/jobs/{id}</c>), <c>owner</c> (the host name), <c>client</c> (who created it), and after success <c>images</c> (metadata), <c>png:{i}</c> and
/// <c>grid</c>. It expires <c>Serving:RequestTimeout + Jobs:ResultTtl</c> after it was created, and <c>Jobs:ResultTtl</c>
/// after it ended, as the owner's own copy does. Cancel and forget requests travel on the channel <c>{prefix}control</c>;
/// every replica listens, and the one that holds the job acts.</summary>
/// <remarks>Progress is published at most every <see cref="MinInterval"/> (and always on a state change to a final
/// state), previews are not shared, and a queued job's place is the one it had at its last published change. When
/// Redis cannot be reached, every call fails fast (no backlog; <see cref="SharedStoreOptions.TimeoutMs"/> while the
/// connection has not noticed yet): the owner goes on serving the jobs it holds, and the job routes answer 503 for the
/// rest (<see cref="SharedStoreUnavailable"/>), new jobs included, rather than make jobs the other replicas never learn of.</remarks>
public sealed class RedisSharedJobs : ISharedJobs, IDisposable
{
    public static readonly TimeSpan MinInterval = TimeSpan.FromMilliseconds(100);

    private readonly ConnectionMultiplexer redis;
    private readonly string prefix;
    private readonly RedisChannel control;
    private readonly IServiceProvider services;
    private readonly JobOptions jobOptions;
    private readonly TimeSpan requestTimeout;
    private readonly ILogger<RedisSharedJobs> logger;
    private readonly string owner = Environment.MachineName;

    public RedisSharedJobs(IOptions<SharedStoreOptions> options, IOptions<JobOptions> jobs, IOptions<Core.Serving.ServingOptions> serving,
        IServiceProvider services, ILogger<RedisSharedJobs> logger)
    {
        var o = options.Value;
        var configuration = ConfigurationOptions.Parse(o.Redis!);
        // Start even while Redis is down (it reconnects in the background); the job routes answer 503 until it is back.
        configuration.AbortOnConnectFail = false;
        // A call made while the connection is down fails at once instead of waiting in the backlog for the sync/async
        // timeout (5 s by default: the 5.6–6 s lookups of issue 19).
        configuration.BacklogPolicy = BacklogPolicy.FailFast;
        if (!Sets(o.Redis!, "connectTimeout")) configuration.ConnectTimeout = o.TimeoutMs;
        if (!Sets(o.Redis!, "syncTimeout")) configuration.SyncTimeout = o.TimeoutMs;
        if (!Sets(o.Redis!, "asyncTimeout")) configuration.AsyncTimeout = o.TimeoutMs;
        redis = ConnectionMultiplexer.Connect(configuration);
        prefix = o.KeyPrefix;
        control = RedisChannel.Literal(prefix + "control");
        this.services = services;
        jobOptions = jobs.Value;
        requestTimeout = serving.Value.RequestTimeout;
        this.logger = logger;
        // Listening from the first use on is enough: a replica holds jobs only after its JobStore (which needs this) exists.
        try { redis.GetSubscriber().Subscribe(control, (_, message) => OnControl(message)); }
        catch (RedisException e) { logger.LogWarning("Not listening for other replicas' cancel requests yet: {Reason}", e.Message); }
    }

    public bool Enabled => true;

    public bool Reachable => redis.IsConnected;

    private static bool Sets(string configuration, string option) =>
        configuration.Contains(option + "=", StringComparison.OrdinalIgnoreCase);

    /// <summary>Fails fast while the connection is known to be down.</summary>
    private void EnsureReachable(string what)
    {
        if (!redis.IsConnected) throw new SharedStoreUnavailableException($"the shared job store (SharedStore:Redis) is unreachable while {what}");
    }

    private IDatabase Db => redis.GetDatabase();
    private RedisKey Key(string id) => prefix + "job:" + id;

    public void Dispose() => redis.Dispose();

    /// <summary>Mirrors still publishing, by job id; removed when their job's final state is in the store.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, TaskCompletionSource> publishing = new();

    public void Track(Job job)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        publishing[job.Id] = done;
        _ = Task.Run(async () =>
        {
            try { await Mirror(job); }
            finally
            {
                publishing.TryRemove(job.Id, out _);
                done.TrySetResult();
            }
        });
    }

    /// <summary>Bounded: a store that does not answer must not hold up the owner's own answers for long, and one known to
    /// be down not at all.</summary>
    public async Task WhenPublished(string id)
    {
        if (!publishing.TryGetValue(id, out var done) || !redis.IsConnected) return;
        try { await done.Task.WaitAsync(TimeSpan.FromSeconds(5)); }
        catch (TimeoutException) { logger.LogWarning("Job {JobId}: the shared store did not take its final state within 5 s", id); }
    }

    /// <summary>Follows one job's events to its end and publishes them.</summary>
    private async Task Mirror(Job job)
    {
        try
        {
            using var subscription = job.Subscribe(); // first event: the current state
            var key = Key(job.Id);
            var last = DateTime.MinValue;
            await foreach (var e in subscription.Events.ReadAllAsync())
            {
                if (e.Preview is not null) continue;
                if (!e.IsFinal && DateTime.UtcNow - last < MinInterval) continue;
                if (e.Status.State == JobState.Succeeded) await PublishResult(job, key);
                await PublishStatus(job, e.Status, key, e.IsFinal ? jobOptions.ResultTtl : requestTimeout + jobOptions.ResultTtl);
                last = DateTime.UtcNow;
            }
        }
        catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
        {
            logger.LogWarning("Job {JobId} is not shared with the other replicas: {Reason}", job.Id, e.Message);
        }
    }

    private async Task PublishStatus(Job job, JobSnapshot status, RedisKey key, TimeSpan ttl)
    {
        var store = services.GetRequiredService<JobStore>();
        var model = services.GetRequiredService<LoadedModel>();
        var json = JsonSerializer.Serialize(JobResponse.From(job, status, store.PositionOf(job), model), WireJson.Options);
        var batch = Db.CreateBatch();
        var set = batch.HashSetAsync(key, [new("status", json), new("owner", owner), new("client", job.Owner.Client)]);
        var expire = batch.KeyExpireAsync(key, ttl);
        batch.Execute();
        await Task.WhenAll(set, expire);
    }

    /// <summary>The images (and the grid of several, built once here rather than on every replica that serves it) go in
    /// before the final status, so a reader that sees <c>succeeded</c> finds them.</summary>
    private async Task PublishResult(Job job, RedisKey key)
    {
        var images = job.Result!.Images;
        var entries = new List<HashEntry>
        {
            new("images", JsonSerializer.Serialize(images.Select(i => new SharedImage(i.Index, i.Seed, i.ClassLabel, i.ClassName)).ToList(), WireJson.Options)),
        };
        entries.AddRange(images.Select((image, i) => new HashEntry($"png:{i.ToString(CultureInfo.InvariantCulture)}", image.Png)));
        if (images.Count > 1)
            entries.Add(new("grid", ImageResults.Grid(services.GetRequiredService<LoadedModel>(), job.Parameters, images)));
        await Db.HashSetAsync(key, entries.ToArray());
    }

    public async Task<SharedJob?> GetAsync(string id, CancellationToken cancel = default)
    {
        EnsureReachable($"looking up {id}");
        try
        {
            var values = await Db.HashGetAsync(Key(id), ["status", "images", "client"]).WaitAsync(cancel);
            if (values[0].IsNull) return null;
            var status = JsonSerializer.Deserialize<JobResponse>((string)values[0]!, WireJson.Options)!;
            var images = values[1].IsNull ? [] : JsonSerializer.Deserialize<List<SharedImage>>((string)values[1]!, WireJson.Options)!;
            return new SharedJob(status, images, values[2].IsNull ? null : (string?)values[2]);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            logger.LogWarning("Shared job store unreachable while looking up {JobId}: {Reason}", id, e.Message);
            throw new SharedStoreUnavailableException($"the shared job store (SharedStore:Redis) is unreachable while looking up {id}", e);
        }
    }

    public async Task<byte[]?> GetPngAsync(string id, int? index, CancellationToken cancel = default)
    {
        EnsureReachable($"reading {id}'s result");
        try
        {
            var key = Key(id);
            RedisValue field = index is { } i ? $"png:{i.ToString(CultureInfo.InvariantCulture)}" : "grid";
            var png = await Db.HashGetAsync(key, field).WaitAsync(cancel);
            if (png.IsNull && index is null) png = await Db.HashGetAsync(key, "png:0").WaitAsync(cancel); // one image: no grid
            return png.IsNull ? null : (byte[])png!;
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            logger.LogWarning("Shared job store unreachable while reading {JobId}'s result: {Reason}", id, e.Message);
            throw new SharedStoreUnavailableException($"the shared job store (SharedStore:Redis) is unreachable while reading {id}'s result", e);
        }
    }

    public async Task RequestAsync(string id, SharedCommand command)
    {
        EnsureReachable($"asking the owner of {id} to {command.ToString().ToLowerInvariant()} it");
        try { await redis.GetSubscriber().PublishAsync(control, $"{command.ToString().ToLowerInvariant()} {id}"); }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            throw new SharedStoreUnavailableException($"the shared job store (SharedStore:Redis) is unreachable while asking the owner of {id} " +
                $"to {command.ToString().ToLowerInvariant()} it", e);
        }
    }

    public async Task ForgetAsync(string id)
    {
        try { await Db.KeyDeleteAsync(Key(id)); }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            logger.LogWarning("Shared job store unreachable while forgetting {JobId} (it expires on its own): {Reason}", id, e.Message);
        }
    }

    /// <summary>A cancel or forget request from any replica: acted on here only if this replica holds the job.</summary>
    private void OnControl(RedisValue message)
    {
        var parts = ((string?)message ?? "").Split(' ', 2);
        if (parts.Length != 2 || services.GetRequiredService<JobStore>().Get(parts[1]) is not { } job) return;
        if (parts[0] == "cancel") job.Cancel();
        else if (parts[0] == "forget" && !job.Cancel()) services.GetRequiredService<JobStore>().Remove(job);
    }
}

/// <summary>Composition: Redis when <c>SharedStore:Redis</c> is set, else the store that shares nothing (chosen when
/// first resolved, after all configuration sources are in).</summary>
public static class SharedJobsRegistration
{
    public static WebApplicationBuilder AddSharedJobs(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<SharedStoreOptions>().BindConfiguration(SharedStoreOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<RedisSharedJobs>();
        builder.Services.AddSingleton<ISharedJobs>(sp => string.IsNullOrWhiteSpace(sp.GetRequiredService<IOptions<SharedStoreOptions>>().Value.Redis)
            ? new NoSharedJobs()
            : sp.GetRequiredService<RedisSharedJobs>());
        return builder;
    }
}
