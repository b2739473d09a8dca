using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace DiTServer.Api.Tests;

/// <summary>What a replica behind a load balancer needs: result URLs that no forged Host or X-Forwarded-Host can point
/// elsewhere, forwarded headers honoured only from trusted proxies, and a readiness probe that says not-ready while the
/// queue is full (liveness stays up).</summary>
public sealed class ScaleOutTests
{
    private const string UrlBody = """{"prompt": 2, "n": 1, "response_format": "url", "seed": 3, "steps": 2}""";

    /// <summary>POSTs the OpenAI-style url request through the test server with the given connection and headers.</summary>
    private static async Task<(int Status, string Body)> PostUrlRequest(ServerFactory factory, string host, IPAddress? remote = null,
        params (string Name, string Value)[] headers)
    {
        var context = await factory.Server.SendAsync(c =>
        {
            c.Request.Method = "POST";
            c.Request.Path = "/v1/images/generations";
            c.Request.Host = new HostString(host);
            c.Request.ContentType = "application/json";
            var bytes = Encoding.UTF8.GetBytes(UrlBody);
            c.Request.Body = new MemoryStream(bytes);
            c.Request.ContentLength = bytes.Length;
            c.Connection.RemoteIpAddress = remote ?? IPAddress.Parse("192.0.2.10");
            foreach (var (name, value) in headers) c.Request.Headers[name] = value;
        });
        using var reader = new StreamReader(context.Response.Body);
        return (context.Response.StatusCode, await reader.ReadToEndAsync());
    }

    private static string Url(string body) =>
        JsonDocument.Parse(body).RootElement.GetProperty("data")[0].GetProperty("url").GetString()!;

    [Fact]
    public async Task By_default_a_forged_host_does_not_reach_the_result_url_which_is_relative()
    {
        using var factory = new ServerFactory();
        _ = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var (status, body) = await PostUrlRequest(factory, "evil.example:666", null, ("X-Forwarded-Host", "evil2.example"), ("X-Forwarded-Proto", "gopher"));
        Assert.True(status == 200, body);
        var url = Url(body);
        Assert.Matches("^/v1/jobs/job_[0-9a-f]{32}/result\\?index=0$", url);
        Assert.DoesNotContain("evil", body);
        Assert.DoesNotContain("gopher", body);
    }

    [Fact]
    public async Task A_configured_base_url_builds_absolute_urls_whatever_the_host()
    {
        using var factory = new ServerFactory(("PublicUrls:BaseUrl", "https://dit.example.com/images-api/"));
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var (status, body) = await PostUrlRequest(factory, "evil.example");
        Assert.True(status == 200, body);
        var url = Url(body);
        Assert.StartsWith("https://dit.example.com/images-api/v1/jobs/job_", url);
        Assert.DoesNotContain("evil", body);
        // The path under the base is the one this server serves.
        var png = await client.GetAsync(new Uri(url).PathAndQuery.Replace("/images-api", ""));
        Assert.Equal(HttpStatusCode.OK, png.StatusCode);
        Assert.Equal("image/png", png.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task With_allowed_hosts_a_foreign_host_is_refused_and_an_allowed_one_makes_absolute_urls()
    {
        using var factory = new ServerFactory(("AllowedHosts", "dit.example.com;ditserver"));
        _ = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var (refused, _) = await PostUrlRequest(factory, "evil.example");
        Assert.Equal(400, refused);
        var (status, body) = await PostUrlRequest(factory, "dit.example.com");
        Assert.True(status == 200, body);
        Assert.StartsWith("http://dit.example.com/v1/jobs/job_", Url(body));
    }

    [Fact]
    public async Task Forwarded_headers_are_honoured_from_a_trusted_proxy_only_and_the_forwarded_host_is_filtered()
    {
        using var factory = new ServerFactory(
            ("AllowedHosts", "dit.example.com;ditserver"),
            ("PublicUrls:ForwardedHeaders", "true"),
            ("PublicUrls:KnownNetworks:0", "10.0.0.0/8"));
        _ = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var proxy = IPAddress.Parse("10.1.2.3");
        (string, string)[] forwarded = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "dit.example.com"), ("X-Forwarded-For", "203.0.113.9")];

        // The ingress (in the trusted network) calls the Service name; the client called https://dit.example.com.
        var (status, body) = await PostUrlRequest(factory, "ditserver", proxy, forwarded);
        Assert.True(status == 200, body);
        Assert.StartsWith("https://dit.example.com/v1/jobs/job_", Url(body));

        // The same headers from an address outside the trusted networks are ignored.
        (status, body) = await PostUrlRequest(factory, "ditserver", IPAddress.Parse("192.0.2.77"), forwarded);
        Assert.True(status == 200, body);
        Assert.StartsWith("http://ditserver/v1/jobs/job_", Url(body));

        // A trusted proxy passing on a forged X-Forwarded-Host: not in AllowedHosts, so it is not applied.
        (status, body) = await PostUrlRequest(factory, "ditserver", proxy, ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.example"));
        Assert.True(status == 200, body);
        Assert.DoesNotContain("evil", body);
    }

    [Theory]
    [InlineData("PublicUrls:BaseUrl", "ftp://dit.example.com")]
    [InlineData("PublicUrls:BaseUrl", "/relative")]
    [InlineData("PublicUrls:KnownNetworks:0", "10.0.0.0/99")]
    [InlineData("PublicUrls:KnownProxies:0", "proxy.local")]
    public void A_bad_public_url_setting_fails_at_start_naming_the_key(string key, string value)
    {
        using var factory = new ServerFactory((key, value));
        var e = Assert.ThrowsAny<Exception>(() => factory.CreateClient());
        Assert.Contains(key.Split(':')[0] + ":" + key.Split(':')[1], e.ToString());
    }

    [Fact]
    public async Task Readiness_is_503_while_the_queue_is_full_and_liveness_stays_200()
    {
        // One queue place and a batch of one guided image: A runs, B waits in the only place, so the queue is full.
        using var factory = new ServerFactory(("Serving:QueueCapacity", "1"), ("Serving:MaxBatchRows", "2"), ("Serving:MaxImagesPerRequest", "1"))
        {
            StepDelay = TimeSpan.FromMilliseconds(5),
        };
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);

        const string Long = """{"class_label": 1, "steps": 1000, "cfg_scale": 4, "seed": 1}""";
        var (a, _, _) = await client.CreateJob(Long);
        await factory.WaitFor(s => s.ActiveRequests == 1, "A running");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode); // running work alone is not "full"
        var (b, _, _) = await client.CreateJob(Long);
        await factory.WaitFor(s => s.QueueDepth == 1, "B queued");

        foreach (var path in new[] { "/health/ready", "/v2/health/ready" })
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await client.GetAsync(path)).StatusCode);
        foreach (var path in new[] { "/health/live", "/v2/health/live" })
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(path)).StatusCode);

        // A place frees (B leaves the queue): ready again.
        Assert.Equal(HttpStatusCode.Accepted, (await client.DeleteAsync($"/v1/jobs/{b}")).StatusCode);
        await factory.WaitFor(s => s.QueueDepth == 0, "B gone");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await client.DeleteAsync($"/v1/jobs/{a}")).StatusCode);
    }
}
