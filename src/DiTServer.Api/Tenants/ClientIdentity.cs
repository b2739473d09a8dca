using System.Security.Cryptography;
using System.Text;

namespace DiTServer.Api.Tenants;

/// <summary>Named API keys that identify clients for fair sharing (configuration section <c>Clients</c>) when no tenant
/// is configured. They authorise nothing: a request without a known key is still served, identified by its remote address.</summary>
public sealed class ClientOptions
{
    public const string Section = "Clients";

    /// <summary>Client name → key, e.g. <c>Clients__ApiKeys__studio=…</c>. A request with
    /// <c>Authorization: Bearer &lt;key&gt;</c> counts as that client wherever it comes from.</summary>
    public Dictionary<string, string> ApiKeys { get; set; } = new();
}

/// <summary>Who sent a request, for the scheduler's per-client limits and fair sharing, and for job ownership.</summary>
public static class ClientIdentity
{
    /// <summary>With tenants configured, the tenant of the bearer key (<c>tenant:NAME</c>; <see cref="Caller.Anonymous"/>
    /// without one, which the tenant filter refuses first). Otherwise <c>key:NAME</c> for a configured client key, else
    /// <c>ip:ADDRESS</c> (the connection's address; behind a proxy, the forwarded one only when forwarded headers are
    /// configured, since the header is otherwise the client's to forge).</summary>
    public static Caller Of(HttpContext http)
    {
        // Asked several times per request (tenant filter, handler, metrics); a tenant lookup hashes the key, so once is enough.
        if (http.Items.TryGetValue(typeof(Caller), out var known) && known is Caller caller) return caller;
        caller = Resolve(http);
        http.Items[typeof(Caller)] = caller;
        return caller;
    }

    private static Caller Resolve(HttpContext http)
    {
        var token = Http.BearerToken.From(http.Request.Headers.Authorization);
        if (http.RequestServices.GetService<TenantDirectory>() is { Enabled: true } tenants)
            return token is { Length: > 0 } && tenants.Find(token) is { } tenant ? TenantDirectory.CallerOf(tenant) : Caller.Anonymous;
        var keys = http.RequestServices.GetService<IOptions<ClientOptions>>()?.Value.ApiKeys;
        if (keys is { Count: > 0 } && token is not null)
        {
            var given = Encoding.UTF8.GetBytes(token);
            foreach (var (name, key) in keys)
                if (key.Length > 0 && CryptographicOperations.FixedTimeEquals(given, Encoding.UTF8.GetBytes(key)))
                    return new Caller($"key:{name}", ClientShare.Default, null);
        }
        var address = http.Connection.RemoteIpAddress;
        if (address is { IsIPv4MappedToIPv6: true }) address = address.MapToIPv4();
        return address is null ? Caller.Anonymous : new Caller($"ip:{address}", ClientShare.Default, null);
    }
}
