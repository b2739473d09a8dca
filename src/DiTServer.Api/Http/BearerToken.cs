namespace DiTServer.Api.Http;

/// <summary>The token of an <c>Authorization: Bearer &lt;token&gt;</c> header, read one way for the admin key and for
/// the client keys of fair sharing.</summary>
public static class BearerToken
{
    /// <summary>The trimmed token (possibly empty; scheme name case-insensitive, as RFC 9110 says), or null when the
    /// header is absent or not a bearer header.</summary>
    public static string? From(string? authorization)
    {
        const string scheme = "Bearer ";
        if (authorization is null || !authorization.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)) return null;
        return authorization[scheme.Length..].Trim();
    }
}
