using System.Diagnostics;

namespace DiTServer.Api.Tests;

/// <summary><c>.ci/check-results</c>, the part of <c>.ci/run</c> that judges a run from its TRX files, fed synthetic
/// TRX files: a good run passes; a skip under CI=true, a count under the floor, a failure or a project that ran
/// nothing fails, each with its exit code and the final <c>tests: N passed, M failed</c> line.</summary>
public sealed class CiResultsCheckTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ci-results-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_good_run_passes_and_ends_with_the_summary_line()
    {
        Trx("core", Passed("Core.A"), Passed("Core.B"));
        Trx("api", Passed("Api.A"));
        var (code, output) = Check(expectedProjects: 2, floor: 3);
        Assert.True(code == 0, output);
        Assert.Equal("tests: 3 passed, 0 failed", LastLine(output));
    }

    [Fact]
    public void A_skip_under_CI_fails_unless_the_allow_list_gives_it_with_a_reason()
    {
        Trx("core", Passed("Core.A"), Skipped("Core.NeedsChromium"));
        var (code, output) = Check(expectedProjects: 1, floor: 1);
        Assert.True(code == 1, output);
        Assert.Contains("Core.NeedsChromium", output);
        Assert.Equal("tests: 1 passed, 0 failed", LastLine(output));

        var allowed = Allow("# header comment", "Core.NeedsChromium # chromium cannot run in this CI image");
        (code, output) = Check(expectedProjects: 1, floor: 1, allowed);
        Assert.True(code == 0, output);
        Assert.Contains("skipped (allowed", output);

        (code, output) = Check(expectedProjects: 1, floor: 1, ci: false);
        Assert.True(code == 0, $"outside CI a skip is reported, not failed:\n{output}");
    }

    [Fact]
    public void An_allowed_skip_without_a_reason_fails()
    {
        Trx("core", Passed("Core.A"));
        var (code, output) = Check(expectedProjects: 1, floor: 1, Allow("Core.NeedsChromium"));
        Assert.True(code == 1, output);
        Assert.Contains("needs a reason", output);
    }

    [Fact]
    public void Fewer_tests_than_the_floor_fail()
    {
        Trx("core", Passed("Core.A"), Passed("Core.B"));
        var (code, output) = Check(expectedProjects: 1, floor: 3);
        Assert.True(code == 1, output);
        Assert.Contains("floor is 3", output);
        Assert.Equal("tests: 2 passed, 0 failed", LastLine(output));
    }

    [Fact]
    public void A_failed_test_or_a_project_without_results_fails()
    {
        Trx("core", Passed("Core.A"), Failed("Core.B"));
        var (code, output) = Check(expectedProjects: 1, floor: 1);
        Assert.True(code == 1, output);
        Assert.Equal("tests: 1 passed, 1 failed", LastLine(output));

        File.Delete(Path.Combine(_dir, "core.trx"));
        Trx("core", Passed("Core.A"));
        (code, output) = Check(expectedProjects: 2, floor: 1);
        Assert.True(code == 1, output);
        Assert.Contains("ran no test", output);
    }

    private (int Code, string Output) Check(int expectedProjects, int floor, string? allowed = null, bool ci = true)
    {
        var psi = new ProcessStartInfo("bash")
        {
            ArgumentList = { Path.Combine(RepositoryPaths.Root, ".ci", "check-results"), _dir, $"{expectedProjects}", $"{floor}",
                allowed ?? Allow() },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.Environment["CI"] = ci ? "true" : "";
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    private static string LastLine(string output) => output.TrimEnd().Split('\n')[^1];

    private string Allow(params string[] lines)
    {
        var path = Path.Combine(_dir, $"allowed-{Guid.NewGuid():N}.txt");
        File.WriteAllLines(path, lines);
        return path;
    }

    private static (string Name, string Outcome) Passed(string name) => (name, "Passed");
    private static (string Name, string Outcome) Failed(string name) => (name, "Failed");
    private static (string Name, string Outcome) Skipped(string name) => (name, "NotExecuted");

    /// <summary>A TRX file shaped as `dotnet test --logger trx` writes it (the parts the script reads).</summary>
    private void Trx(string project, params (string Name, string Outcome)[] results)
    {
        var rows = results.Select(r =>
            $"""    <UnitTestResult executionId="{Guid.NewGuid()}" testId="{Guid.NewGuid()}" testName="{r.Name}" computerName="ci" """ +
            $"""duration="00:00:00.01" outcome="{r.Outcome}" testListId="8c84fa94" relativeResultsDirectory="x" />""");
        int passed = results.Count(r => r.Outcome == "Passed"), failed = results.Count(r => r.Outcome == "Failed");
        File.WriteAllText(Path.Combine(_dir, $"{project}.trx"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <TestRun id="{Guid.NewGuid()}" name="ci" xmlns="http://microsoft.com/schemas/VisualStudio/TeamTest/2010">
              <Results>
            {string.Join("\n", rows)}
              </Results>
              <ResultSummary outcome="{(failed > 0 ? "Failed" : "Completed")}">
                <Counters total="{results.Length}" executed="{passed + failed}" passed="{passed}" failed="{failed}" error="0"
                  timeout="0" aborted="0" inconclusive="0" passedButRunAborted="0" notExecuted="{results.Length - passed - failed}" />
              </ResultSummary>
            </TestRun>
            """);
    }
}
