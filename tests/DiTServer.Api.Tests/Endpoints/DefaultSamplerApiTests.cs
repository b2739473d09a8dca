using System.Globalization;
using System.Text.Json;
using DiTServer.Core.Imaging;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>A request that names no sampler runs exactly what <c>GET /v1/models</c> advertises as the default
/// (<c>default_sampler</c>, its <c>default_steps</c>, order, variant and spacing): the PNG's metadata says so, the
/// engine takes exactly <c>default_steps</c> forwards for it, and its image is byte for byte the one of a request that
/// spells those settings out (and not the one of a request with one step more).</summary>
public sealed class DefaultSamplerApiTests : IDisposable
{
    private readonly ServerFactory factory = new(("Serving:WarmUp", "false"));

    public void Dispose() => factory.Dispose();

    [Fact]
    public async Task A_request_without_sampler_fields_runs_the_advertised_default()
    {
        var client = factory.CreateClient();
        var model = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("models")[0];
        string name = model.GetProperty("default_sampler").GetString()!;
        var sampler = model.GetProperty("samplers").EnumerateArray().Single(s => s.GetProperty("name").GetString() == name);
        int steps = sampler.GetProperty("default_steps").GetInt32();
        int order = sampler.GetProperty("default_order").GetInt32();
        string? spacing = sampler.TryGetProperty("default_spacing", out var sp) ? sp.GetString() : null;
        string? variant = sampler.TryGetProperty("default_variant", out var v) ? v.GetString() : null;
        await factory.WaitFor(s => s.Ready, "readiness");

        long before = factory.Engine.Snapshot().Forwards;
        var implicitPng = await Png(client, """{"class_label": 1, "seed": 7}""");
        Assert.Equal(steps, factory.Engine.Snapshot().Forwards - before); // alone on the engine: one forward per step

        var text = PngWriter.ReadText(implicitPng);
        Assert.Equal(name, text["sampler"]);
        Assert.Equal(steps.ToString(CultureInfo.InvariantCulture), text["steps"]);
        if (spacing is not null) Assert.Equal(spacing, text["spacing"]);
        if (sampler.GetProperty("order_settable").GetBoolean()) Assert.Equal(order.ToString(CultureInfo.InvariantCulture), text["order"]);
        if (variant is not null) Assert.Equal(variant, text["unipc_variant"]);

        var spelled = new Dictionary<string, object> { ["class_label"] = 1, ["seed"] = 7, ["sampler"] = name, ["steps"] = steps };
        if (spacing is not null) spelled["spacing"] = spacing;
        if (sampler.GetProperty("order_settable").GetBoolean()) spelled["order"] = order;
        if (variant is not null) spelled["unipc_variant"] = variant;
        Assert.Equal(implicitPng, await Png(client, JsonSerializer.Serialize(spelled)));
        spelled["steps"] = steps + 1;
        Assert.NotEqual(implicitPng, await Png(client, JsonSerializer.Serialize(spelled)));

        // Today's defaults, pinned: UniPC (order 2, bh2, time-uniform), 5 steps. Changing them is a decision: update
        // SamplerDefaults, docs/samplers.md and tests/fixtures/unipc-default.safetensors together.
        Assert.Equal(("unipc", 5, 2, "bh2", "time_uniform"), (name, steps, order, variant, spacing));
    }

    private static async Task<byte[]> Png(HttpClient client, string body)
    {
        var response = await client.PostAsync("/v1/images", Json(body));
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        Assert.Equal("image/png", response.Content.Headers.ContentType?.MediaType);
        return await response.Content.ReadAsByteArrayAsync();
    }
}
