using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace DiTServer.Api.Tests;

/// <summary>Liveness, readiness (after the warm-up), the KServe v2 twins, and Prometheus metrics that move.</summary>
public sealed class ProbesTests
{
    [Theory]
    [InlineData("/health/live")]
    [InlineData("/health/ready")]
    [InlineData("/v2/health/live")]
    [InlineData("/v2/health/ready")]
    public async Task Probes_answer_200_once_warmed_up(string path)
    {
        using var factory = new ServerFactory();
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(path)).StatusCode);
    }

    [Fact]
    public async Task Metrics_move_after_a_request()
    {
        using var factory = new ServerFactory();
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var before = await client.GetStringAsync("/metrics");
        var response = await client.PostAsync("/v1/images",
            new StringContent("""{"class_label": 4, "num_images": 2, "steps": 4}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var after = await client.GetStringAsync("/metrics");

        Assert.Equal(Value(before, "dit_images_generated_total") + 2, Value(after, "dit_images_generated_total"));
        Assert.True(Value(after, "dit_forward_rows_count") >= Value(before, "dit_forward_rows_count") + 4);
        Assert.True(Value(after, "dit_queue_wait_seconds_count") > Value(before, "dit_queue_wait_seconds_count"));
        Assert.True(Value(after, "dit_step_duration_seconds_count") > Value(before, "dit_step_duration_seconds_count"));
        foreach (var name in new[] { "dit_queue_depth", "dit_active_requests", "dit_worker_errors_total" })
            Assert.Contains(name, after);
    }

    private static double Value(string exposition, string series)
    {
        // Summed over the series' other labels (e.g. device="cpu:0"): a name with labels matches those it names and any others.
        var (name, labels) = series.Contains('{') ? (series[..series.IndexOf('{')], series[(series.IndexOf('{') + 1)..^1].Split(',')) : (series, []);
        return Regex.Matches(exposition, "^" + Regex.Escape(name) + @"(\{[^}]*\})? (\S+)$", RegexOptions.Multiline)
            .Where(m => labels.All(l => m.Groups[1].Value.Contains(l)))
            .Sum(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }
}
