using System.ComponentModel.DataAnnotations;

namespace DiTServer.Core.Serving;

/// <summary>Queue and batching limits (configuration section <c>Serving</c>).</summary>
public sealed class ServingOptions
{
    public const string Section = "Serving";

    /// <summary>Requests that may wait for the worker; one more is answered 503 at once.</summary>
    [Range(1, 100_000)]
    public int QueueCapacity { get; set; } = 64;

    /// <summary>Rows in one DiT forward; a guided image costs two (conditional + unconditional).</summary>
    [Range(1, 4096)]
    public int MaxBatchRows { get; set; } = 32;

    /// <summary>Rows admitted at once over all clients; more than <see cref="MaxBatchRows"/> lets a light client's run
    /// join while a heavy client's runs pause between steps. Unset = 4 × <see cref="MaxBatchRows"/>. One client never
    /// runs more than <see cref="MaxBatchRows"/> rows.</summary>
    [Range(1, 65_536)]
    public int? MaxRunningRows { get; set; }

    public int EffectiveMaxRunningRows => MaxRunningRows ?? 4 * MaxBatchRows;

    /// <summary>Most bytes the feature caches of the requests running on one device may hold together (each request's
    /// <see cref="GenerationParameters.CacheBytes"/>: rows × T × D × 4, twice for <c>taylor</c>, 0 without caching). A
    /// request whose cache would not fit waits for running ones to finish; on an idle device it is always admitted.
    /// 1 GiB holds 28 requests of 8 guided images with taylor caching on DiT-XL/2 at 256 px (37.7 MB each).</summary>
    [Range(typeof(long), "0", "1099511627776")]
    public long MaxCacheBytes { get; set; } = 1L << 30;

    /// <summary>Most work one client may have waiting in the queue, in row-steps (rows × steps; a guided image has two
    /// rows): a request past it is answered 429 with Retry-After. Unset = no per-client limit. The default, 64,000, is
    /// four of the largest requests (8 guided images × 1000 steps = 16,000 row-steps each).</summary>
    [Range(1, int.MaxValue)]
    public int? MaxQueuedCostPerClient { get; set; } = 64_000;

    /// <summary>Most requests one client may have waiting (its share of queue places); more is answered 429. Unset =
    /// a quarter of <see cref="QueueCapacity"/>, at least 4 (all of a smaller queue). A tenant may have its own
    /// (<c>Tenants:N:MaxQueuedRequests</c>).</summary>
    [Range(1, 100_000)]
    public int? MaxQueuedRequestsPerClient { get; set; }

    public int EffectiveMaxQueuedRequestsPerClient => MaxQueuedRequestsPerClient ?? Math.Max(QueueCapacity / 4, Math.Min(QueueCapacity, 4));

    /// <summary>Queue places kept for clients that have nothing queued: a client that already waits is answered 429
    /// once only this many places are free, so no client can take the last place. Unset = an eighth of
    /// <see cref="QueueCapacity"/> (0 below 8 places).</summary>
    [Range(0, 100_000)]
    public int? QueueReserve { get; set; }

    public int EffectiveQueueReserve => QueueReserve ?? QueueCapacity / 8;

    [Range(1, 256)]
    public int MaxImagesPerRequest { get; set; } = 8;

    public BatchingMode Batching { get; set; } = BatchingMode.Step;

    /// <summary>A request still unfinished after this long (queue wait included) is removed and answered 504.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>After SIGTERM, the time running requests get to finish; then they are answered 503 at the next step
    /// boundary. It must be shorter than the host's shutdown timeout (after which Kestrel aborts the connections that are
    /// still open), leaving time for one step and the answers.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(25);

    /// <summary>Largest accepted JSON body of <c>POST /v1/images</c>, <c>/v1/jobs</c> and <c>/v1/images/generations</c>;
    /// 0 (the default) = <see cref="BodyLimitFor"/>: room for the fields and two base64 PNGs (init_image, mask) of the
    /// served model's size, so image to image works on any model without a setting.</summary>
    [Range(0, MaxBodyCeiling)]
    public int MaxBodyBytes { get; set; }

    /// <summary>The most <see cref="MaxBodyBytes"/> may be, and the transport's hard limit while it is automatic.</summary>
    public const int MaxBodyCeiling = 64 << 20;

    /// <summary>Kestrel's limit for these routes, set when they are mapped (before a model is loaded); the exact limit,
    /// <see cref="BodyLimitFor"/>, is applied while the body is read.</summary>
    public int TransportBodyLimit => MaxBodyBytes > 0 ? MaxBodyBytes : MaxBodyCeiling;

    /// <summary>The body limit for a model of <paramref name="imageSize"/>² pixels: <see cref="MaxBodyBytes"/> when set,
    /// else 8 KiB of fields plus two base64 PNGs as large as an unfiltered, uncompressed RGBA image of that size can be
    /// (its rows, a filter byte each, deflate's stored-block framing, and 4 KiB of chunks such as our own metadata).</summary>
    public int BodyLimitFor(int imageSize)
    {
        if (MaxBodyBytes > 0) return MaxBodyBytes;
        long raw = (long)imageSize * (1 + 4L * imageSize);
        long png = raw + 5 * (raw / 65_535 + 1) + 4096;
        long base64 = 4 * ((png + 2) / 3);
        return (int)Math.Min(MaxBodyCeiling, 8192 + 2 * base64);
    }

    /// <summary>Seconds sent in <c>Retry-After</c> when the queue is full or the server is stopping.</summary>
    [Range(1, 3600)]
    public int RetryAfterSeconds { get; set; } = 2;

    /// <summary>Torch intra-op threads of the worker; unset = libtorch's default (one per core). On a small model or a
    /// shared machine 1 can be much faster (demo model, batch 1: 10 ms with 1 thread vs 84 ms with 2 on a busy 2-core host).</summary>
    [Range(1, 1024)]
    public int? IntraOpThreads { get; set; }

    /// <summary>Run a small generation at start-up; <c>/health/ready</c> waits for it to finish with finite output.</summary>
    public bool WarmUp { get; set; } = true;

    /// <summary>Cross-field rule: every valid request must fit one forward on its own.</summary>
    public string? Check()
    {
        if (MaxBodyBytes is > 0 and < 256)
            return $"Serving:MaxBodyBytes ({MaxBodyBytes}) must be 0 (automatic: room for two PNGs of the model's size) or at least 256";
        if (MaxBatchRows < 2 * MaxImagesPerRequest)
            return $"Serving:MaxBatchRows ({MaxBatchRows}) must be at least 2 × Serving:MaxImagesPerRequest ({MaxImagesPerRequest}): a guided image costs " +
                $"two rows, and every request must fit one forward";
        if (EffectiveQueueReserve >= QueueCapacity)
            return $"Serving:QueueReserve ({EffectiveQueueReserve}) must be less than Serving:QueueCapacity ({QueueCapacity})";
        if (EffectiveMaxRunningRows < MaxBatchRows)
            return $"Serving:MaxRunningRows ({EffectiveMaxRunningRows}) must be at least Serving:MaxBatchRows ({MaxBatchRows})";
        return null;
    }
}
