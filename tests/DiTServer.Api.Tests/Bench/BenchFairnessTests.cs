using DiTServer.Bench;

namespace DiTServer.Api.Tests;

/// <summary><c>bench fairness</c>'s cases run briefly on the tiny model and report what they claim to measure; the
/// numbers themselves are the benchmark's (docs/performance-and-reliability.md), not asserted here.</summary>
public sealed class BenchFairnessTests
{
    private static async Task<(int Code, string[] Lines, string Errors)> Bench(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await BenchProgram.RunAsync(["bench", "fairness", "--model", TestPaths.TinyModel, "--threads", "1", .. args], stdout, stderr);
        return (code, stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries), stderr.ToString());
    }

    [Fact]
    public async Task An_unknown_case_is_one_line_and_exit_2()
    {
        var (code, _, errors) = await Bench("--cases", "places,nope");
        Assert.Equal(2, code);
        Assert.Single(errors.TrimEnd().Split('\n'));
        Assert.Contains("unknown case 'nope'", errors);
    }

    [Fact]
    public async Task Places_results_and_tenants_cases_report_their_rows()
    {
        var (code, lines, errors) = await Bench("--cases", "places,results,tenants", "--share-seconds", "0.3", "--flood-steps", "50", "--flood-images", "2");
        Assert.True(code == 0, errors);
        // Default queue: the first flooder gets its share (16 of 64 places), and the last place goes to a newcomer.
        Assert.Contains("client-0\t16\tClientLimit\t16", lines);
        Assert.Contains(lines, l => l.EndsWith("\t1\tFull\t64", StringComparison.Ordinal));
        Assert.Contains("keeper's result kept: yes", lines);
        Assert.Contains(lines, l => l.StartsWith("churn\t512\t", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("heavy\t2\t", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("light\t1\t", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_many_clients_case_reports_the_newcomers_latency_against_the_goal()
    {
        var (code, lines, errors) = await Bench("--cases", "clients", "--clients", "4", "--probes", "1", "--flood-steps", "200", "--flood-images", "2");
        Assert.True(code == 0, errors);
        Assert.Contains(lines, l => l.StartsWith("idle\t", StringComparison.Ordinal));
        var row = Assert.Single(lines, l => l.StartsWith("4 flooding clients, fair\t", StringComparison.Ordinal)).Split('\t');
        Assert.Equal(6, row.Length);
        Assert.Contains(row[5], new[] { "yes", "NO" });
    }
}
