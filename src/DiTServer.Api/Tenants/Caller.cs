namespace DiTServer.Api.Tenants;

/// <summary>Who sent a request: the client that fair sharing and limits count (<c>tenant:NAME</c>, <c>key:NAME</c> or
/// <c>ip:ADDRESS</c>), its share, and its tenant when tenants are configured.</summary>
public sealed record Caller(string Client, ClientShare Share, TenantOptions? Tenant)
{
    public static Caller Anonymous { get; } = new("anonymous", ClientShare.Default, null);

    /// <summary>The metrics' <c>tenant</c> label: a configured name or "anonymous" (bounded cardinality).</summary>
    public string MetricLabel => Tenant?.Name ?? "anonymous";

    /// <summary>The request the engine runs for this caller.</summary>
    public GenerationRequest Request(string id, GenerationParameters parameters, TimeSpan timeout, CancellationToken cancellation) =>
        new(id, parameters, timeout, cancellation) { Client = Client, Share = Share };
}
