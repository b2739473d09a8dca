using System.Security.Cryptography;
using System.Text;

namespace DiTServer.Api.Tenants;

/// <summary>The configured tenants, looked up by the SHA-256 of a bearer key (in constant time).</summary>
public sealed class TenantDirectory(IOptions<List<TenantOptions>> options)
{
    private readonly IReadOnlyList<(byte[] Hash, TenantOptions Tenant)> tenants =
        options.Value.Select(t => (Convert.FromHexString(t.ApiKeySha256), t)).ToList();

    /// <summary>Tenants are configured: generation and job routes need a tenant's key, and jobs belong to tenants.</summary>
    public bool Enabled => tenants.Count > 0;

    public IEnumerable<string> Names => tenants.Select(t => t.Tenant.Name);

    /// <summary>The tenant whose key this is, or null.</summary>
    public TenantOptions? Find(string key)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        TenantOptions? found = null;
        foreach (var (h, tenant) in tenants)
            if (CryptographicOperations.FixedTimeEquals(hash, h)) found = tenant; // no early exit: every key costs the same
        return found;
    }

    public static Caller CallerOf(TenantOptions tenant) =>
        new($"tenant:{tenant.Name}", new ClientShare(tenant.Weight, tenant.MaxQueuedCost, tenant.MaxQueuedRequests), tenant);

    /// <summary>Cross-entry rules, checked at start: names and keys are unique.</summary>
    public static string? Check(IReadOnlyList<TenantOptions> tenants)
    {
        if (tenants.GroupBy(t => t.Name, StringComparer.OrdinalIgnoreCase).FirstOrDefault(g => g.Count() > 1) is { } name)
            return $"Tenants: the name '{name.Key}' is used twice";
        if (tenants.GroupBy(t => t.ApiKeySha256, StringComparer.OrdinalIgnoreCase).Any(g => g.Count() > 1))
            return "Tenants: two tenants have the same ApiKeySha256";
        if (tenants.Any(t => string.Equals(t.Name, "anonymous", StringComparison.OrdinalIgnoreCase)))
            return "Tenants: 'anonymous' is reserved (the metrics' label for requests without a tenant)";
        return null;
    }
}
