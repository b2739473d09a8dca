using DiTServer.Core.Pipeline;
using DiTServer.Api.Cli;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;
using static DiTServer.Api.Tests.CliRun;

namespace DiTServer.Api.Tests;

/// <summary>The `train` and `export` verbs end to end on a tiny synthetic IDX dataset.</summary>
public class TrainCommandTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-train-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private string[] TinyRun(string data, string run, int steps) =>
    [
        "train", "--data", data, "--out", run, "--hidden", "32", "--depth", "1", "--heads", "2", "--patch", "2",
        "--steps", steps.ToString(), "--batch", "4", "--lr", "1e-3", "--ema-warmup", "--log-every", "2", "--checkpoint-every", "2",
        "--threads", "1", "--class-names", "low,high",
    ];

    [Fact]
    public async Task Trains_checkpoints_resumes_and_exports_a_servable_model()
    {
        string data = Path.Combine(root, "data"), run = Path.Combine(root, "run");
        SyntheticIdx.Write(data, count: 16, classes: 2);

        var (code, stdout, err) = await Run(TinyRun(data, run, 4));
        Assert.True(code == 0, err + stdout);
        Assert.Contains("step 4/4", stdout);
        Assert.Equal(4, TrainingCheckpoint.ReadInfo(Path.Combine(run, "checkpoint.ckpt")).Step);
        Assert.Equal(["step,loss,mse,vb,elapsed_s", "2,", "4,"], File.ReadAllLines(Path.Combine(run, "loss.csv"))
            .Select(l => l.Split(',')[0] == "step" ? l : l[..2]));

        // A second run into the same folder must not silently overwrite it.
        (code, _, err) = await Run(TinyRun(data, run, 4));
        Assert.Equal(CommandLine.ExitUsage, code);
        Assert.Contains("--resume", err);

        (code, stdout, err) = await Run("train", "--out", run, "--resume", "--steps", "6", "--threads", "1");
        Assert.True(code == 0, err + stdout);
        Assert.Contains("from step 4 to 6", stdout);
        Assert.Equal(6, TrainingCheckpoint.ReadInfo(Path.Combine(run, "checkpoint.ckpt")).Step);
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, "loss.csv")).Length);

        using (var served = LoadedModel.Load(run))
        {
            Assert.Equal("run", served.Name);
            Assert.Equal("high", served.Classes[1]);
            Assert.Equal(8, served.ImageSize);
        }
        Assert.True(File.Exists(Path.Combine(run, "run.pt")));

        string exported = Path.Combine(root, "exported");
        (code, stdout, err) = await Run("export", "--checkpoint", run, "--out", exported, "--name", "tiny");
        Assert.True(code == 0, err);
        Assert.Contains("step 6", stdout);
        using var again = LoadedModel.Load(exported);
        Assert.Equal("tiny", again.Name);
    }

    [Theory]
    [InlineData("not found", "--data", "/nonexistent/folder")]
    [InlineData("batch size", "--batch", "0")]
    [InlineData("divisible", "--patch", "3")]
    public async Task Bad_input_exits_with_code_2_and_one_line(string expected, string option, string value)
    {
        string data = Path.Combine(root, "data");
        SyntheticIdx.Write(data, count: 8);
        var (code, _, err) = await Run(WithOption(TinyRun(data, Path.Combine(root, "bad"), 2), option, value));
        AssertUsageError(code, err, expected);
    }

    [Fact]
    public async Task Resume_without_a_checkpoint_says_so()
    {
        var (code, _, err) = await Run("train", "--out", Path.Combine(root, "empty"), "--resume");
        Assert.Equal(CommandLine.ExitUsage, code);
        Assert.Contains("checkpoint not found", err);
    }
}

/// <summary>The `eval` verb end to end: classifier trained on the spot, accuracy table, FID, grid.</summary>
public class EvalCommandTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-eval-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public async Task Evaluates_a_28px_model_and_writes_classifier_and_grid()
    {
        string data = Path.Combine(root, "data"), run = Path.Combine(root, "run");
        SyntheticIdx.Write(data, count: 64, side: 28, classes: 2);
        SyntheticIdx.Write(data, count: 32, side: 28, classes: 2, prefix: "t10k", seed: 2);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync(["train", "--data", data, "--out", run, "--hidden", "32", "--depth", "1", "--heads", "2",
            "--patch", "4", "--steps", "2", "--batch", "4", "--threads", "1"], stdout, stderr);
        Assert.True(code == 0, stderr.ToString());

        string classifier = Path.Combine(root, "cnn.safetensors"), grid = Path.Combine(root, "grid.png");
        stdout = new StringWriter();
        code = await CommandLine.RunAsync(["eval", "--model", run, "--data", data, "--classifier", classifier, "--epochs", "1",
            "--per-class", "3", "--steps", "2", "--grid", grid, "--grid-per-class", "2", "--threads", "1"], stdout, stderr);
        Assert.True(code == 0, stderr.ToString());
        string report = stdout.ToString();
        Assert.Contains("| classifier accuracy, real test set (32 images) |", report);
        Assert.Contains("| classifier accuracy, generated (6 samples) |", report);
        Assert.Contains("FID (CNN features), generated vs test", report);
        Assert.True(File.Exists(classifier));
        using var png = SixLabors.ImageSharp.Image.Load(grid);
        Assert.Equal((2 * 30 + 2, 2 * 30 + 2), (png.Width, png.Height)); // 2 classes × 2 samples, 2 px padding
    }

    [Fact]
    public async Task Seed_sets_saved_and_judged_again_give_the_same_table_with_intervals()
    {
        string data = Path.Combine(root, "data"), run = Path.Combine(root, "run"), samples = Path.Combine(root, "samples");
        SyntheticIdx.Write(data, count: 64, side: 28, classes: 2);
        SyntheticIdx.Write(data, count: 32, side: 28, classes: 2, prefix: "t10k", seed: 2);
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync(["train", "--data", data, "--out", run, "--hidden", "32", "--depth", "1", "--heads", "2",
            "--patch", "4", "--steps", "2", "--batch", "4", "--threads", "1"], new StringWriter(), stderr);
        Assert.True(code == 0, stderr.ToString());
        string[] common = ["eval", "--model", run, "--data", data, "--classifier", Path.Combine(root, "cnn.safetensors"), "--epochs", "1",
            "--per-class", "4", "--steps", "2", "--seed-sets", "2", "--bootstrap", "50", "--threads", "1"];

        var direct = new StringWriter();
        code = await CommandLine.RunAsync([.. common, "--save-samples", samples], direct, stderr);
        Assert.True(code == 0, stderr.ToString());
        Assert.True(File.Exists(Path.Combine(samples, "seed-1000000-images-idx3-ubyte")));
        var again = new StringWriter();
        code = await CommandLine.RunAsync([.. common, "--samples", samples], again, stderr);
        Assert.True(code == 0, stderr.ToString());
        static string[] Table(StringWriter w) => w.ToString().Split('\n').Where(l => l.StartsWith('|')).ToArray();
        Assert.Equal(Table(direct), Table(again));
        Assert.Contains(Table(direct), l => l.StartsWith("| seed 1000000 | 8 |", StringComparison.Ordinal));
        Assert.Matches(@"\| classifier accuracy, generated \(16 samples\) \| [0-9.]+ \[[0-9.]+, [0-9.]+\] \|", direct.ToString());
        Assert.Contains("| recall (k = 3), generated vs 16 test images |", direct.ToString());

        var refused = new StringWriter();
        Assert.Equal(CommandLine.ExitUsage, await CommandLine.RunAsync([.. common, "--sample-only"], new StringWriter(), refused));
        Assert.Contains("--sample-only needs --save-samples", refused.ToString());
        refused = new StringWriter();
        Assert.Equal(CommandLine.ExitUsage, await CommandLine.RunAsync([.. common, "--samples", Path.Combine(root, "none")], new StringWriter(), refused));
        Assert.Contains("--samples folder not found", refused.ToString());
    }

    [Fact]
    public async Task Rejects_an_rgb_or_small_model()
    {
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync(["eval", "--model", TestPaths.TinyModel, "--data", root, "--classifier", Path.Combine(root, "c.safetensors")],
            new StringWriter(), stderr);
        Assert.Equal(CommandLine.ExitUsage, code);
        Assert.Contains("grayscale model of at least 28×28", stderr.ToString());
    }
}
