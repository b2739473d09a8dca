using System.Net;
using System.Text;
using System.Text.Json;
using DiTServer.Bench.Evidence;

namespace DiTServer.Api.Tests;

/// <summary>With <c>Logs:Format=json</c>, what libtorch writes straight to stderr (its TORCH_WARN lines, NNPACK's
/// "Could not initialize NNPACK! Unsupported hardware") is captured as a JSON event: every line of the process's
/// stdout and stderr parses as JSON (issue 19, item 7).</summary>
public sealed class NativeOutputLogTests
{
    [Fact]
    public async Task A_real_libtorch_warning_becomes_one_json_event_and_every_line_is_json()
    {
        var settings = new Dictionary<string, string>
        {
            ["Logs__Format"] = "json", ["Serilog__MinimumLevel__Default"] = "Information",
            // std() of one value: libtorch's own TORCH_WARN ("degrees of freedom is <= 0"), written to fd 2 at start.
            ["DITSERVER_TEST_NATIVE_WARNING"] = "1",
        };
        string log;
        await using (var server = await ChildServer.StartAsync(TestPaths.TinyModel, settings, TimeSpan.FromMinutes(1)))
        {
            log = server.LogPath;
            var response = await server.Client.PostAsync("/v1/images", new StringContent("""{"class_label": 1, "steps": 2}""", Encoding.UTF8,
                "application/json"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        var lines = File.ReadAllLines(log).Where(l => l.Length > 0).ToList();
        File.Delete(log);
        var events = new List<JsonElement>();
        foreach (var line in lines)
        {
            try { events.Add(JsonDocument.Parse(line).RootElement); }
            catch (JsonException) { Assert.Fail($"not JSON: {line}"); }
        }
        var warning = Assert.Single(events, e => e.GetProperty("@m").GetString()!.Contains("degrees of freedom is <= 0"));
        Assert.Equal("Warning", warning.GetProperty("@l").GetString());
        Assert.Equal("native", warning.GetProperty("Source").GetString());
        Assert.Contains("ReduceOps.cpp", warning.GetProperty("NativeOutput").GetString());
        // .NET's own events still come through beside the captured lines.
        Assert.Contains(events, e => e.GetProperty("@m").GetString()!.StartsWith("Serving", StringComparison.Ordinal));
    }
}
