using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using DiTServer.Api.Tenants;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace DiTServer.Api.Tests;

/// <summary>Tenants: with a <c>Tenants</c> list, generation and job routes need a tenant's key (401 otherwise, in each
/// route's error dialect), health, metrics, docs and the playground stay open, and a job belongs to its tenant.</summary>
public sealed class TenantTests : IDisposable
{
    private const string KeyA = "key-of-tenant-a", KeyB = "key-of-tenant-b";
    private static string Sha(string key) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    private readonly ServerFactory factory = new(("Tenants:0:Name", "a"), ("Tenants:0:ApiKeySha256", Sha(KeyA)), ("Tenants:0:Weight", "2"),
        ("Tenants:1:Name", "b"), ("Tenants:1:ApiKeySha256", Sha(KeyB).ToLowerInvariant()));

    public void Dispose() => factory.Dispose();

    private HttpClient Client(string? key)
    {
        var client = factory.CreateClient();
        if (key is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    private static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    [Theory]
    [InlineData(null)]
    [InlineData("not-a-tenant-key")]
    public async Task Without_a_tenants_key_generation_and_job_routes_answer_401_in_their_own_dialect(string? key)
    {
        var client = Client(key);
        foreach (var (path, body) in new[] { ("/v1/images", """{"class_label": 1, "steps": 2}"""), ("/v1/jobs", """{"class_label": 1, "steps": 2}""") })
        {
            var response = await client.PostAsync(path, Body(body));
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/v1/jobs/job_0123")).StatusCode);
        var openai = await client.PostAsync("/v1/images/generations", Body("""{"prompt": "1", "steps": 2}"""));
        Assert.Equal(HttpStatusCode.Unauthorized, openai.StatusCode);
        var error = JsonDocument.Parse(await openai.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("authentication_error", error.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Health_metrics_docs_models_and_the_playground_need_no_key()
    {
        var client = Client(null);
        foreach (var path in new[] { "/health/live", "/metrics", "/swagger/v1/swagger.json", "/v1/models", "/" })
            Assert.True((await client.GetAsync(path)).IsSuccessStatusCode, path);
    }

    [Fact]
    public async Task A_tenants_key_generates_and_its_job_is_invisible_to_another_tenant()
    {
        var a = Client(KeyA);
        var b = Client(KeyB);
        Assert.Equal(HttpStatusCode.OK, (await a.PostAsync("/v1/images", Body("""{"class_label": 1, "steps": 2}"""))).StatusCode);
        var (id, created, _) = await a.CreateJob("""{"class_label": 2, "steps": 2}""");
        Assert.Equal(HttpStatusCode.Accepted, created.StatusCode);
        await a.WaitForJob(id, j => j.State() == "succeeded", "the job done");

        foreach (var path in new[] { $"/v1/jobs/{id}", $"/v1/jobs/{id}/result", $"/v1/jobs/{id}/events" })
        {
            var other = await b.GetAsync(path);
            Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
            Assert.Contains("there is no job", await other.Content.ReadAsStringAsync());
        }
        Assert.Equal(HttpStatusCode.NotFound, (await b.DeleteAsync($"/v1/jobs/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await a.GetAsync($"/v1/jobs/{id}/result")).StatusCode); // not deleted by b
        Assert.Equal(HttpStatusCode.NoContent, (await a.DeleteAsync($"/v1/jobs/{id}")).StatusCode);
    }

    [Fact]
    public async Task The_metrics_count_requests_by_tenant_name()
    {
        await Client(KeyB).PostAsync("/v1/images", Body("""{"class_label": 1, "steps": 2}"""));
        await Client(null).PostAsync("/v1/images", Body("""{"class_label": 1, "steps": 2}"""));
        var metrics = await Client(null).GetStringAsync("/metrics");
        Assert.Contains("outcome=\"ok\",tenant=\"b\"}", metrics);
        Assert.Contains("outcome=\"unauthorized\",tenant=\"anonymous\"}", metrics);
    }

    [Fact]
    public void A_tenant_list_with_a_repeated_name_a_bad_hash_or_the_reserved_name_is_refused_at_start()
    {
        static string? Check(params TenantOptions[] tenants) => TenantsRegistration.Validate([.. tenants]);
        var good = new TenantOptions { Name = "a", ApiKeySha256 = Sha(KeyA) };
        Assert.Null(Check(good, new TenantOptions { Name = "b", ApiKeySha256 = Sha(KeyB) }));
        Assert.Contains("used twice", Check(good, new TenantOptions { Name = "A", ApiKeySha256 = Sha(KeyB) }));
        Assert.Contains("same ApiKeySha256", Check(good, new TenantOptions { Name = "b", ApiKeySha256 = Sha(KeyA) }));
        Assert.Contains("Tenants:1:ApiKeySha256 must be 64 hex digits", Check(good, new TenantOptions { Name = "b", ApiKeySha256 = "abc" }));
        Assert.Contains("Tenants:0:Weight", Check(new TenantOptions { Name = "a", ApiKeySha256 = Sha(KeyA), Weight = 0 }));
        Assert.Contains("reserved", Check(new TenantOptions { Name = "anonymous", ApiKeySha256 = Sha(KeyA) }));
    }

    [Fact]
    public void A_broken_tenant_list_fails_when_the_options_are_resolved_at_start_naming_the_entry()
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Tenants:0:Name"] = "a", ["Tenants:0:ApiKeySha256"] = Sha(KeyA), ["Tenants:1:Name"] = "b", ["Tenants:1:ApiKeySha256"] = "not-a-hash",
        });
        builder.AddTenants();
        using var app = builder.Build();
        var e = Assert.Throws<Microsoft.Extensions.Options.OptionsValidationException>(() =>
            app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<List<TenantOptions>>>().Value);
        Assert.Contains("Tenants:1:ApiKeySha256 must be 64 hex digits", e.Message);
    }
}
