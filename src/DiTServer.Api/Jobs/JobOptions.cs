using System.ComponentModel.DataAnnotations;

namespace DiTServer.Api.Jobs;

/// <summary>How long and how many finished jobs are kept (configuration section <c>Jobs</c>; env <c>Jobs__ResultTtl</c>).</summary>
/// <remarks>Unfinished jobs are bounded by the queue (<c>Serving:QueueCapacity</c>) and the batch; these limits
/// bound what stays in memory after a job ends. The oldest finished job is evicted first.</remarks>
public sealed class JobOptions
{
    public const string Section = "Jobs";

    /// <summary>A finished job (and its images) is forgotten this long after it ended; then its id answers 404.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "7.00:00:00", ErrorMessage = "Jobs:ResultTtl must be between 00:00:01 and 7.00:00:00")]
    public TimeSpan ResultTtl { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Finished jobs kept at most (succeeded, failed and cancelled alike).</summary>
    [Range(1, 1_000_000, ErrorMessage = "Jobs:MaxResults must be between 1 and 1000000")]
    public int MaxResults { get; set; } = 256;

    /// <summary>Finished jobs one client keeps at most: past it, its new results evict its own old ones. Unset = no limit
    /// of its own (the pool's limits still evict the oldest result of the client holding the most, never of a client
    /// holding fewer); a tenant may have its own (<c>Tenants:N:MaxResults</c>).</summary>
    [Range(1, 1_000_000, ErrorMessage = "Jobs:MaxResultsPerClient must be between 1 and 1000000")]
    public int? MaxResultsPerClient { get; set; }

    public int EffectiveMaxResultsPerClient => MaxResultsPerClient ?? MaxResults;

    /// <summary>Bytes of finished results kept at most (PNG bytes plus the raw pixels a grid is built from).
    /// The newest result is kept even when it alone is larger.</summary>
    [Range(typeof(long), "1024", "1099511627776", ErrorMessage = "Jobs:MaxResultBytes must be between 1024 and 1099511627776")]
    public long MaxResultBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>Longest side, in pixels, of the step previews a job asks for with <c>preview_every</c>; smaller images
    /// keep their own size. Bounds what the worker renders and what every event stream carries per preview.</summary>
    [Range(8, 1024, ErrorMessage = "Jobs:PreviewMaxSize must be between 8 and 1024")]
    public int PreviewMaxSize { get; set; } = 64;
}
