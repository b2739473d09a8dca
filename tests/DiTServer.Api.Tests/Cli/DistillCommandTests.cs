using DiTServer.Api.Cli;
using DiTServer.Core.Model;
using DiTServer.Core.Pipeline;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;

namespace DiTServer.Api.Tests;

/// <summary><c>train --distill-from</c>: a student distilled through the CLI the user runs, and every bad setting one line on
/// stderr and exit 2, before any work.</summary>
public sealed class DistillCommandTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-distill-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private string Teacher() => TinyDiT.Teacher(Path.Combine(root, "teacher"), "low", "high");

    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Distils_a_student_that_serves_with_its_own_defaults_and_names_its_teacher()
    {
        string run = Path.Combine(root, "student");
        var (code, stdout, err) = await Run("train", "--distill-from", Teacher(), "--out", run, "--student-steps", "1", "--teacher-steps", "3",
            "--trajectories", "8", "--steps", "2", "--batch", "4", "--threads", "1", "--log-every", "1");
        Assert.True(code == 0, err + stdout);
        Assert.Contains("teacher trajectories", stdout);
        using var student = LoadedModel.Load(run);
        Assert.True(student.Config.GuidanceConditioned);
        Assert.Equal("teacher", student.Manifest.DistilledFrom);
        Assert.Equal(1, student.Defaults!.Steps);

        // sample without --sampler takes the student's defaults: one DDIM step (PNG metadata says so).
        string images = Path.Combine(root, "images");
        (code, stdout, err) = await Run("sample", "--model", run, "--labels", "1", "--out", images, "--threads", "1");
        Assert.True(code == 0, err + stdout);
        var text = DiTServer.Core.Imaging.PngWriter.ReadText(File.ReadAllBytes(Path.Combine(images, "0.png")));
        Assert.Equal(("dpmpp_2m", "1", "1"), (text["sampler"], text["steps"], text["order"]));

        // export of a distillation checkpoint writes the same student: teacher, defaults, strict weights.
        string exported = Path.Combine(root, "exported");
        (code, stdout, err) = await Run("export", "--checkpoint", run, "--out", exported);
        Assert.True(code == 0, err + stdout);
        using var again = LoadedModel.Load(exported);
        Assert.Equal(("teacher", student.Defaults), (again.Manifest.DistilledFrom, again.Defaults));
    }

    [Theory]
    [InlineData("--student-steps 3", "--student-steps")]
    [InlineData("--student-steps 2 --teacher-steps 5", "--teacher-steps")]
    [InlineData("--trajectories 0", "--trajectories")]
    [InlineData("--guidance-range 6,2", "guidance")]
    [InlineData("--guidance-range four", "--guidance-range must be two numbers")]
    [InlineData("--data /tmp", "exclude each other")]
    [InlineData("--vae /tmp", "--vae does not apply")]
    public async Task Bad_distillation_settings_exit_2_with_one_line(string extra, string expected)
    {
        string run = Path.Combine(root, "bad");
        var (code, _, err) = await Run(["train", "--distill-from", Teacher(), "--out", run, "--threads", "1", .. extra.Split(' ')]);
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.False(Directory.Exists(Path.Combine(run, TeacherTrajectories.FolderName)), "work began before the settings were checked");
    }

    [Fact]
    public async Task A_missing_teacher_exits_2()
    {
        var (code, _, err) = await Run("train", "--distill-from", Path.Combine(root, "nowhere"), "--out", Path.Combine(root, "x"));
        Assert.Equal(2, code);
        Assert.Contains("nowhere", err);
    }
}
