using System.Globalization;
using DiTServer.Api.Cli;
using DiTServer.Bench;
using DiTServer.Bench.Evidence;
using DiTServer.Core.Model;

namespace DiTServer.Api.Tests;

/// <summary>The benchmark program's command-line contract: bad input is one line and exit 2 (before: a FormatException
/// and exit 1 for <c>--rates 2,x</c>), and <c>bench forward</c> counts FLOPs from the architecture (before: DiT-XL/2's
/// 118.6 Gflops for every preset, so DiT-S/8 "ran" at 12,629 GFLOP/s).</summary>
public sealed class BenchCommandTests
{
    [Theory]
    [InlineData("load", "--rates", "2,x", "--rates: 'x' is not a number")]
    [InlineData("load", "--steps", "4,2.5", "--steps takes whole numbers")]
    [InlineData("load", "--cfg", "0", "--cfg: 0 is outside 1..20")]
    [InlineData("forward", "--batch", "2,0", "bad batch size '0'")]
    public async Task Bad_list_values_are_one_line_and_exit_2(string verb, string option, string value, string expected)
    {
        var stderr = new StringWriter();
        string[] args = verb == "load"
            ? ["bench", "load", "--model", TestPaths.TinyModel, option, value]
            : ["bench", verb, "--arch", "DiT-S/8", "--image-size", "64", option, value];
        int code = await BenchProgram.RunAsync(args, new StringWriter(), stderr);
        Assert.Equal(2, code);
        var lines = stderr.ToString().TrimEnd().Split('\n');
        Assert.Single(lines);
        Assert.Contains(expected, lines[0]);
    }

    [Fact]
    public async Task Every_benchmark_answers_help()
    {
        // Before: the commands had two parents (a "bench" command and the root), and --help on any of them was an error.
        foreach (var command in BenchProgram.Root(TextWriter.Null, TextWriter.Null).Subcommands.Select(c => c.Name))
        {
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            Assert.Equal(0, await BenchProgram.RunAsync(["bench", command, "--help"], stdout, stderr));
            Assert.Contains("Usage:", stdout.ToString());
            Assert.Equal("", stderr.ToString());
        }
    }

    [Fact]
    public void Forward_flops_follow_the_architecture_and_match_the_paper_for_xl2()
    {
        // The paper's Table 4 (fvcore, multiply-adds): DiT-XL/2 118.6, DiT-S/8 0.36 Gflops at 256 px.
        double Gflops(string preset) => PeakBenchmark.ForwardFlops(DiTConfig.FromPreset(preset) with { InputSize = 32 }) / 2 / 1e9;
        Assert.InRange(Gflops("DiT-XL/2"), 118.6 * 0.98, 118.6 * 1.02);
        Assert.InRange(Gflops("DiT-S/8"), 0.36 * 0.9, 0.36 * 1.1);
    }

    [Fact]
    public async Task Bench_forward_reports_the_presets_own_cost()
    {
        var stdout = new StringWriter();
        int code = await BenchProgram.RunAsync(["bench", "forward", "--arch", "DiT-S/8", "--image-size", "64", "--batch", "1", "--warmup", "0", "--iters", "1"],
            stdout, new StringWriter());
        Assert.Equal(0, code);
        var header = stdout.ToString().Split('\n')[0];
        double expected = PeakBenchmark.ForwardFlops(DiTConfig.FromPreset("DiT-S/8") with { InputSize = 8 }) / 2 / 1e9;
        Assert.Contains($"{expected.ToString("F2", CultureInfo.InvariantCulture)} paper Gflops per image", header);
    }

    [Fact]
    public async Task The_server_has_no_bench_verb_and_says_where_it_went()
    {
        // The benchmarks left the server assembly (issue 14): its CLI points at the new program instead of failing oddly.
        var stderr = new StringWriter();
        Assert.Equal(2, await CommandLine.RunAsync(["bench", "forward"], new StringWriter(), stderr));
        Assert.Contains("tools/DiTServer.Bench", stderr.ToString());
        Assert.DoesNotContain(typeof(Program).Assembly.GetTypes(), t => t.Namespace?.Contains("Evidence") == true || t.Name.Contains("Bench"));
    }

    [Fact]
    public async Task Bench_word_is_optional()
    {
        var (a, b) = (new StringWriter(), new StringWriter());
        Assert.Equal(0, await BenchProgram.RunAsync(["bench", "sgemm", "--m", "8", "--k", "8", "--n", "8", "--iters", "1"], a, new StringWriter()));
        Assert.Equal(0, await BenchProgram.RunAsync(["sgemm", "--m", "8", "--k", "8", "--n", "8", "--iters", "1"], b, new StringWriter()));
        Assert.StartsWith("sgemm (8x8)", a.ToString());
        Assert.StartsWith("sgemm (8x8)", b.ToString());
    }
}
