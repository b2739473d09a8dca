using System.Net;
using System.Text.Json;

namespace DiTServer.Api.Tests;

/// <summary>The KServe v2 (Open Inference Protocol) answers have the protocol's JSON shapes, field by field:
/// <c>$metadata_server_response</c> { name, version, extensions }, <c>$metadata_model_response</c> { name, versions?,
/// platform, inputs, outputs } with <c>$metadata_tensor</c> { name, datatype, shape }, the datatype one of the
/// protocol's names and the shape int64s with -1 for a variable dimension; readiness by status code alone.
/// (https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/)</summary>
public sealed class KServeShapesTests(KServeShapesTests.Server server) : IClassFixture<KServeShapesTests.Server>
{
    public sealed class Server() : ServerFixture(new(("Serving:WarmUp", "false")));

    private static readonly HashSet<string> V2Datatypes =
        ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"];

    private readonly HttpClient client = server.Factory.CreateClient();

    [Fact]
    public async Task Server_metadata_is_name_version_and_extensions()
    {
        var response = await client.GetAsync("/v2");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        AssertFields(doc, required: ["name", "version", "extensions"], optional: []);
        Assert.Equal(JsonValueKind.String, doc.GetProperty("name").ValueKind);
        Assert.Equal(JsonValueKind.String, doc.GetProperty("version").ValueKind);
        Assert.All(doc.GetProperty("extensions").EnumerateArray(), e => Assert.Equal(JsonValueKind.String, e.ValueKind));
    }

    [Fact]
    public async Task Model_metadata_describes_inputs_and_outputs_as_v2_tensors()
    {
        var models = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        string name = models.GetProperty("name").GetString()!;
        int size = models.GetProperty("image_size").GetInt32(), channels = models.GetProperty("image_channels").GetInt32();

        var doc = JsonDocument.Parse(await client.GetStringAsync($"/v2/models/{Uri.EscapeDataString(name)}")).RootElement;
        AssertFields(doc, required: ["name", "platform", "inputs", "outputs"], optional: ["versions"]);
        Assert.Equal(name, doc.GetProperty("name").GetString());
        Assert.Equal(JsonValueKind.String, doc.GetProperty("platform").ValueKind);
        if (doc.TryGetProperty("versions", out var versions))
            Assert.All(versions.EnumerateArray(), v => Assert.Equal(JsonValueKind.String, v.ValueKind));
        foreach (var list in new[] { "inputs", "outputs" })
        {
            Assert.NotEmpty(doc.GetProperty(list).EnumerateArray());
            foreach (var t in doc.GetProperty(list).EnumerateArray())
            {
                AssertFields(t, required: ["name", "datatype", "shape"], optional: []);
                Assert.Contains(t.GetProperty("datatype").GetString()!, V2Datatypes);
                Assert.All(t.GetProperty("shape").EnumerateArray(), d => Assert.True(d.TryGetInt64(out long v) && v >= -1, $"{list} shape {d}"));
            }
        }
        // The one output is the images: (-1, H, W, C) uint8, the size the model really makes.
        var image = doc.GetProperty("outputs")[0];
        Assert.Equal("UINT8", image.GetProperty("datatype").GetString());
        Assert.Equal([-1, size, size, channels], image.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
    }

    [Fact]
    public async Task Readiness_answers_by_status_and_another_model_is_404()
    {
        var name = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0].GetProperty("name").GetString()!;
        // Warm-up is off here, so the model is ready at once: 200, the protocol's "ready".
        await server.Factory.WaitFor(s => s.Ready, "readiness");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v2/models/{Uri.EscapeDataString(name)}/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v2/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v2/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v2/models/not-this-one")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v2/models/not-this-one/ready")).StatusCode);
    }

    /// <summary>Every required field is present and no field outside the protocol's object appears.</summary>
    private static void AssertFields(JsonElement obj, string[] required, string[] optional)
    {
        Assert.Equal(JsonValueKind.Object, obj.ValueKind);
        var names = obj.EnumerateObject().Select(p => p.Name).ToHashSet();
        foreach (var r in required) Assert.True(names.Contains(r), $"missing '{r}' in {obj}");
        var extra = names.Except(required).Except(optional).ToList();
        Assert.True(extra.Count == 0, $"fields outside the v2 protocol: {string.Join(", ", extra)} in {obj}");
    }
}
