using System.Net;
using System.Text;
using DiTServer.Bench.Evidence;

namespace DiTServer.Api.Tests;

/// <summary>The fast CI version of <c>bench fuzz</c>: 300 seeded malformed requests across every endpoint → only 4xx
/// problem+json (or 2xx when valid by chance), no 5xx, and the server still healthy and generating afterwards.</summary>
public sealed class FuzzTests
{
    [Fact]
    public async Task Three_hundred_malformed_requests_get_4xx_problem_json_and_the_server_stays_healthy()
    {
        using var factory = new ServerFactory();
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var cases = BadInputFuzzer.Generate(300, seed: 6);
        var report = await BadInputFuzzer.RunAsync(client, cases, parallelism: 4, TimeSpan.FromSeconds(30));
        Assert.True(report.Violations == 0, $"{report.Violations} violations of {report.Cases}:\n{string.Join("\n", report.Failures)}");
        Assert.Equal(0, report.Status5xx);
        Assert.True(report.Status4xx > 200, $"only {report.Status4xx} 4xx answers: the generator lost its teeth");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
        var ok = await client.PostAsync("/v1/images", new StringContent("""{"class_label": 1, "steps": 2}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Fact]
    public async Task A_hundred_malformed_uploads_to_edits_and_variations_get_openai_errors_and_the_server_stays_healthy()
    {
        using var factory = new ServerFactory();
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up");
        var cases = UploadFuzzCases.Generate(100, seed: 6);
        var report = await BadInputFuzzer.RunAsync(client, cases, parallelism: 4, TimeSpan.FromSeconds(60));
        Assert.True(report.Violations == 0, $"{report.Violations} violations of {report.Cases}:\n{string.Join("\n", report.Failures)}");
        Assert.Equal(0, report.Status5xx);
        Assert.True(report.Status4xx > 50, $"only {report.Status4xx} 4xx answers: the generator lost its teeth");
        Assert.True(report.Status2xx > 0, "no upload was valid: the generator never reaches the routes' success path");
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health/ready")).StatusCode);
    }
}
