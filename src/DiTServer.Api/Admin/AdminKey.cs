using System.Security.Cryptography;
using System.Text;

namespace DiTServer.Api.Admin;

/// <summary>Checks a bearer key against the configured SHA-256 (hex) of the admin key, in constant time.</summary>
/// <remarks>Configuration stores only the hash, so a leaked appsettings file does not leak the key.</remarks>
public sealed class AdminKey
{
    private readonly byte[] expectedHash;

    private AdminKey(byte[] expectedHash) => this.expectedHash = expectedHash;

    /// <summary>Null when no hash is configured: the admin routes then do not exist.</summary>
    public static AdminKey? FromConfiguredHash(string? sha256Hex)
    {
        if (string.IsNullOrWhiteSpace(sha256Hex)) return null;
        var hex = sha256Hex.Trim();
        if (hex.Length != 64 || !hex.All(Uri.IsHexDigit))
            throw new ArgumentException("Admin:ApiKeySha256 must be 64 hex digits (the SHA-256 of the admin key)");
        return new AdminKey(Convert.FromHexString(hex));
    }

    /// <summary>SHA-256 hex of a key, for operators writing the configuration (`echo -n key | sha256sum` gives the same).</summary>
    public static string HashOf(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>True when the Authorization header is "Bearer &lt;key&gt;" with the configured key.</summary>
    public bool Accepts(string? authorizationHeader)
    {
        if (Http.BearerToken.From(authorizationHeader) is not { } token) return false;
        var presented = SHA256.HashData(Encoding.UTF8.GetBytes(token));
        // Comparing hashes of equal length in constant time: no timing signal about the key.
        return CryptographicOperations.FixedTimeEquals(presented, expectedHash);
    }
}
