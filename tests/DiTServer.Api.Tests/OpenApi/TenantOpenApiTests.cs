using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace DiTServer.Api.Tests;

/// <summary>Swagger's "Authorize" offers the tenant key exactly when tenants are configured, and "Try it out" sends it on
/// the generation and job routes (the ones that answer 401 without it) and nowhere else.</summary>
public sealed class TenantOpenApiTests
{
    private static async Task<JsonElement> Document(params (string, string)[] settings)
    {
        using var factory = new ServerFactory([("Serving:WarmUp", "false"), .. settings]);
        var json = await factory.CreateClient().GetStringAsync("/swagger/v1/swagger.json");
        return JsonDocument.Parse(json).RootElement.Clone();
    }

    private static bool Secured(JsonElement operation) =>
        operation.TryGetProperty("security", out var security) && security.EnumerateArray().Any(r => r.TryGetProperty("tenantBearer", out _));

    [Fact]
    public async Task With_tenants_generation_and_job_routes_declare_the_tenant_bearer_scheme_and_others_do_not()
    {
        var sha = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes("k")));
        var doc = await Document(("Tenants:0:Name", "a"), ("Tenants:0:ApiKeySha256", sha));
        var scheme = doc.GetProperty("components").GetProperty("securitySchemes").GetProperty("tenantBearer");
        Assert.Equal("http", scheme.GetProperty("type").GetString());
        Assert.Equal("bearer", scheme.GetProperty("scheme").GetString());
        var secured = new List<string>();
        foreach (var path in doc.GetProperty("paths").EnumerateObject())
            foreach (var operation in path.Value.EnumerateObject())
            {
                bool needsKey = path.Name is "/v1/images" or "/v1/images/generations" or "/v1/images/edits" or "/v1/images/variations"
                    || path.Name.StartsWith("/v1/jobs", StringComparison.Ordinal);
                Assert.True(Secured(operation.Value) == needsKey, $"{operation.Name} {path.Name}: secured={Secured(operation.Value)}");
                if (needsKey) secured.Add($"{operation.Name} {path.Name}");
            }
        Assert.Contains("post /v1/images", secured);
        Assert.Contains("post /v1/images/generations", secured);
        Assert.Contains("post /v1/images/edits", secured);
        Assert.Contains("post /v1/images/variations", secured);
        Assert.Contains("post /v1/jobs", secured);
        Assert.Contains("get /v1/jobs/{id}/result", secured);
    }

    [Fact]
    public async Task Without_tenants_the_document_has_no_tenant_scheme()
    {
        var doc = await Document();
        Assert.False(doc.TryGetProperty("components", out var components)
            && components.TryGetProperty("securitySchemes", out var schemes) && schemes.TryGetProperty("tenantBearer", out _));
        foreach (var path in doc.GetProperty("paths").EnumerateObject())
            foreach (var operation in path.Value.EnumerateObject())
                Assert.False(Secured(operation.Value), $"{operation.Name} {path.Name}");
    }
}
