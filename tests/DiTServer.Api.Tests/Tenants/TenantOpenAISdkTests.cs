using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using OpenAI;
using OpenAI.Images;

namespace DiTServer.Api.Tests;

/// <summary>The official .NET OpenAI SDK against a server with tenants: its <c>api_key</c> is the tenant key (sent as
/// <c>Authorization: Bearer</c>), a wrong one is a 401 the SDK reports, and a <c>url</c> answer is fetched with the same
/// tenant's key (another tenant gets 404), as docs/clients.md tells SDK users.</summary>
public sealed class TenantOpenAISdkTests : IDisposable
{
    private const string KeyA = "sdk-tenant-a", KeyB = "sdk-tenant-b";
    private static string Sha(string key) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    private readonly ServerFactory factory = new(("Serving:MaxBatchRows", "16"), ("AllowedHosts", "localhost"),
        ("Tenants:0:Name", "a"), ("Tenants:0:ApiKeySha256", Sha(KeyA)), ("Tenants:1:Name", "b"), ("Tenants:1:ApiKeySha256", Sha(KeyB)));

    public void Dispose() => factory.Dispose();

    private ImageClient Images(string key) => new("ignored", new ApiKeyCredential(key), new OpenAIClientOptions
    {
        Endpoint = new Uri(factory.Server.BaseAddress, "/v1"),
        Transport = new HttpClientPipelineTransport(factory.CreateClient()),
        RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
    });

    private async Task<GeneratedImageSize> Size()
    {
        var models = JsonDocument.Parse(await factory.CreateClient().GetStringAsync("/v1/models")).RootElement;
        int size = models.GetProperty("models")[0].GetProperty("image_size").GetInt32();
        return new GeneratedImageSize(size, size);
    }

    [Fact]
    public async Task The_sdks_api_key_is_the_tenant_key_and_a_wrong_one_is_401()
    {
        var options = new ImageGenerationOptions { Size = await Size(), ResponseFormat = GeneratedImageFormat.Bytes };
        var image = (await Images(KeyA).GenerateImageAsync("3", options)).Value;
        Assert.Equal((byte)'P', image.ImageBytes.ToArray()[1]);
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Images("unused").GenerateImageAsync("3", options));
        Assert.Equal(401, refused.Status);
    }

    [Fact]
    public async Task A_url_answer_is_fetched_with_the_same_tenants_key()
    {
        var options = new ImageGenerationOptions { Size = await Size(), ResponseFormat = GeneratedImageFormat.Uri };
        var url = (await Images(KeyA).GenerateImageAsync("3", options)).Value.ImageUri;
        var http = factory.CreateClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(url)).StatusCode);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", KeyB);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(url)).StatusCode);
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", KeyA);
        var mine = await http.GetAsync(url);
        Assert.Equal(HttpStatusCode.OK, mine.StatusCode);
        Assert.Equal("image/png", mine.Content.Headers.ContentType?.MediaType);
    }
}
