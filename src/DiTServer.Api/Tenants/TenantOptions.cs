using System.ComponentModel.DataAnnotations;

namespace DiTServer.Api.Tenants;

/// <summary>One tenant (configuration list <c>Tenants</c>, e.g. <c>Tenants__0__Name=studio</c>,
/// <c>Tenants__0__ApiKeySha256=…</c>): a user of the server with its own key, weight and limits. With any tenant
/// configured, every generation and job route needs <c>Authorization: Bearer &lt;key&gt;</c> of a tenant.</summary>
public sealed class TenantOptions
{
    public const string Section = "Tenants";

    /// <summary>The tenant's name: the client in logs and fair sharing, and the <c>tenant</c> label of the metrics.</summary>
    [Required, RegularExpression(@"^[A-Za-z0-9_.-]{1,64}$", ErrorMessage = "Tenants:N:Name must be 1-64 letters, digits or _.-")]
    public string Name { get; set; } = "";

    /// <summary>SHA-256 of the tenant's key, 64 hex digits (<c>printf %s "$KEY" | sha256sum</c>): the server never holds
    /// the key itself.</summary>
    [Required, RegularExpression("^[0-9a-fA-F]{64}$", ErrorMessage = "Tenants:N:ApiKeySha256 must be 64 hex digits (the SHA-256 of the key)")]
    public string ApiKeySha256 { get; set; } = "";

    /// <summary>Share of running rows and forwards relative to other tenants (default 1; 2 gets twice the rows of 1).</summary>
    [Range(0.01, 1000, ErrorMessage = "Tenants:N:Weight must be between 0.01 and 1000")]
    public double Weight { get; set; } = 1;

    /// <summary>Row-steps it may have waiting; unset = <c>Serving:MaxQueuedCostPerClient</c>.</summary>
    [Range(1, long.MaxValue, ErrorMessage = "Tenants:N:MaxQueuedCost must be at least 1")]
    public long? MaxQueuedCost { get; set; }

    /// <summary>Requests it may have waiting; unset = <c>Serving:MaxQueuedRequestsPerClient</c>.</summary>
    [Range(1, 100_000, ErrorMessage = "Tenants:N:MaxQueuedRequests must be between 1 and 100000")]
    public int? MaxQueuedRequests { get; set; }

    /// <summary>Finished job results it may keep; unset = <c>Jobs:MaxResultsPerClient</c>.</summary>
    [Range(1, 1_000_000, ErrorMessage = "Tenants:N:MaxResults must be between 1 and 1000000")]
    public int? MaxResults { get; set; }
}
