using System.ComponentModel.DataAnnotations;
using System.Net;
using Microsoft.AspNetCore.HttpOverrides;

namespace DiTServer.Api.Hosting;

/// <summary>How this server is reached from outside (configuration section <c>PublicUrls</c>): the base of the absolute
/// URLs it hands out, and whether it trusts a proxy's <c>X-Forwarded-*</c> headers.</summary>
public sealed class PublicUrlOptions : IValidatableObject
{
    public const string Section = "PublicUrls";

    /// <summary>Absolute http(s) URL clients use to reach this service (e.g. <c>https://dit.example.com</c>, or with a
    /// path prefix). Empty: result URLs are built from the request's Host only when <c>AllowedHosts</c> filters it,
    /// else they are relative paths.</summary>
    public string? BaseUrl { get; set; }

    /// <summary>Trust <c>X-Forwarded-For</c>, <c>-Proto</c> and <c>-Host</c>, from <see cref="KnownProxies"/> and
    /// <see cref="KnownNetworks"/> only (ASP.NET's forwarded-headers middleware). Off by default: without a proxy in
    /// front, any client could claim any scheme, host or address.</summary>
    public bool ForwardedHeaders { get; set; }

    /// <summary>Addresses of the proxies whose forwarded headers are trusted (loopback is always trusted).</summary>
    public string[] KnownProxies { get; set; } = [];

    /// <summary>CIDR ranges of trusted proxies, e.g. the cluster's pod network <c>10.0.0.0/8</c> behind an ingress controller.</summary>
    public string[] KnownNetworks { get; set; } = [];

    /// <summary>Proxies in front of this one whose entries are read from <c>X-Forwarded-For</c> (an ingress alone: 1).</summary>
    [Range(1, 16)]
    public int ForwardLimit { get; set; } = 1;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (!string.IsNullOrEmpty(BaseUrl)
            && (!Uri.TryCreate(BaseUrl, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Query != "" || uri.Fragment != ""))
            yield return new ValidationResult($"PublicUrls:BaseUrl must be an absolute http(s) URL without query or fragment, got '{BaseUrl}'",
                [nameof(BaseUrl)]);
        foreach (var proxy in KnownProxies.Where(p => !IPAddress.TryParse(p, out _)))
            yield return new ValidationResult($"PublicUrls:KnownProxies: '{proxy}' is not an IP address", [nameof(KnownProxies)]);
        foreach (var network in KnownNetworks.Where(n => !System.Net.IPNetwork.TryParse(n, out _)))
            yield return new ValidationResult($"PublicUrls:KnownNetworks: '{network}' is not a CIDR range such as 10.0.0.0/8", [nameof(KnownNetworks)]);
    }
}

/// <summary>Builds the absolute URLs the server hands out (OpenAI-style <c>url</c> results) without trusting a Host
/// header nobody checked: a forged Host would otherwise send the client to the forger's server.</summary>
public sealed class PublicUrls(IOptions<PublicUrlOptions> options, IConfiguration configuration)
{
    private readonly string? baseUrl = options.Value.BaseUrl is { Length: > 0 } b ? b.TrimEnd('/') : null;
    private readonly bool hostIsFiltered = HostFilteringIsOn(configuration);

    /// <summary><c>path</c> (starting with '/') as the client should fetch it: from <see cref="PublicUrlOptions.BaseUrl"/>
    /// when set; from the request's scheme and Host when <c>AllowedHosts</c> has checked that Host (the scheme and Host
    /// may come from trusted forwarded headers); else the path alone, relative to the URL the client called.</summary>
    public string For(HttpRequest request, string path)
    {
        if (baseUrl is not null) return baseUrl + path;
        if (hostIsFiltered && request.Host.HasValue) return $"{request.Scheme}://{request.Host}{request.PathBase}{path}";
        return $"{request.PathBase}{path}";
    }

    /// <summary>True when <c>AllowedHosts</c> names hosts, so ASP.NET's host filtering answers 400 to any other Host.</summary>
    public static bool HostFilteringIsOn(IConfiguration configuration) => AllowedHosts(configuration).Length > 0;

    /// <summary>The hosts of <c>AllowedHosts</c> (';'-separated as ASP.NET reads it); empty for "*" or unset.</summary>
    public static string[] AllowedHosts(IConfiguration configuration)
    {
        var hosts = (configuration["AllowedHosts"] ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return hosts.Contains("*") ? [] : hosts;
    }
}

/// <summary>Composition of <see cref="PublicUrls"/> and the opt-in forwarded-headers middleware.</summary>
public static class PublicUrlsRegistration
{
    public static WebApplicationBuilder AddPublicUrls(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<PublicUrlOptions>().BindConfiguration(PublicUrlOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<PublicUrls>();
        builder.Services.AddOptions<ForwardedHeadersOptions>().Configure<IOptions<PublicUrlOptions>, IConfiguration>((o, publicUrls, configuration) =>
        {
            var p = publicUrls.Value;
            o.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto | ForwardedHeaders.XForwardedHost;
            o.ForwardLimit = p.ForwardLimit;
            foreach (var proxy in p.KnownProxies) o.KnownProxies.Add(IPAddress.Parse(proxy));
            foreach (var network in p.KnownNetworks) o.KnownIPNetworks.Add(System.Net.IPNetwork.Parse(network));
            // Host filtering runs before this middleware and sees only the proxy's Host; the forwarded one is checked here
            // against the same list, so a forged X-Forwarded-Host cannot reach the URLs either.
            foreach (var host in PublicUrls.AllowedHosts(configuration)) o.AllowedHosts.Add(host);
        });
        return builder;
    }

    /// <summary>First in the pipeline when <see cref="PublicUrlOptions.ForwardedHeaders"/> is on, so logging, client
    /// identity and URLs all see the original client's address, scheme and host.</summary>
    public static WebApplication UseForwardedHeadersWhenConfigured(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IOptions<PublicUrlOptions>>().Value.ForwardedHeaders) app.UseForwardedHeaders();
        return app;
    }
}
