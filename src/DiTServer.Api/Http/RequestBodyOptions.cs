namespace DiTServer.Api.Http;

/// <summary><c>RequestBody</c> configuration: how long a client may take to send a POST body.</summary>
public sealed class RequestBodyOptions
{
    public const string Section = "RequestBody";

    /// <summary>The whole body must arrive within this time, else 408 and the connection is closed.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);
}
