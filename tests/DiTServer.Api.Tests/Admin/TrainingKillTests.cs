using System.Diagnostics;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;

namespace DiTServer.Api.Tests;

/// <summary>A real `train` process killed with SIGKILL inside a checkpoint write (held there by the writer's fault hook,
/// so the kill cannot land between writes) leaves a loadable checkpoint, and `--resume` finishes the run from it.</summary>
public class TrainingKillTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-kill-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private readonly System.Text.StringBuilder output = new();

    private Process Train(string? stallMarker, params string[] args)
    {
        // The Api's apphost sits beside the test assembly (project reference).
        var exe = Path.Combine(AppContext.BaseDirectory, "DiTServer.Api");
        var info = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        // AtomicFile's fault hook: the 4th atomic write of the process (a checkpoint; three complete ones before it) stops
        // after 4 KiB and says so through the marker file.
        if (stallMarker is not null) info.Environment["DITSERVER_FAULT_STALL_WRITE"] = $"{stallMarker};4";
        info.ArgumentList.Add("train");
        foreach (var a in args) info.ArgumentList.Add(a);
        var p = Process.Start(info)!;
        // Drain both pipes as lines arrive: a full pipe would block the child's log writes.
        p.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        p.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private string Output() { lock (output) return output.ToString(); }

    [Fact]
    public async Task Killed_mid_checkpoint_three_times_then_resume_completes()
    {
        string data = Path.Combine(root, "data"), run = Path.Combine(root, "run"), ckpt = Path.Combine(run, TrainingSession.CheckpointFile);
        SyntheticIdx.Write(data, count: 64, side: 8, classes: 2);
        string[] common = ["--hidden", "32", "--depth", "1", "--heads", "2", "--patch", "4", "--batch", "8", "--threads", "1",
            "--checkpoint-every", "1", "--log-every", "1"];

        long lastStep = 0;
        for (int cycle = 0; cycle < 3; cycle++)
        {
            string marker = Path.Combine(root, $"stalled-{cycle}");
            using var p = cycle == 0
                ? Train(marker, [.. common, "--data", data, "--out", run, "--steps", "1000000"])
                : Train(marker, "--out", run, "--resume", "--steps", "1000000");
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!File.Exists(marker))
            {
                Assert.False(p.HasExited, $"train exited early: {Output()}");
                Assert.True(DateTime.UtcNow < deadline, $"the writer never reached its fault hook within 60 s: {Output()}");
                await Task.Delay(20);
            }
            // Inside a write: the temp file holds a partial checkpoint beside the complete one.
            Assert.True(new FileInfo(ckpt + ".tmp").Length >= 4096);
            p.Kill(entireProcessTree: true); // SIGKILL: no handler runs
            await p.WaitForExitAsync();
            Assert.True(File.Exists(ckpt + ".tmp"), "the kill did not land inside the write");

            // Whatever the kill interrupted, the checkpoint in place is complete.
            var info = TrainingCheckpoint.ReadInfo(ckpt);
            var (_, model, ema) = TrainingCheckpoint.LoadModels(ckpt);
            model.Dispose();
            ema.Dispose();
            Assert.True(info.Step > lastStep, $"cycle {cycle}: step {info.Step} after {lastStep}");
            lastStep = info.Step;
        }

        long target = lastStep + 3;
        using var final = Train(null, "--out", run, "--resume", "--steps", target.ToString());
        await final.WaitForExitAsync();
        Assert.True(final.ExitCode == 0, $"resume failed ({final.ExitCode}): {Output()}");
        Assert.Equal(target, TrainingCheckpoint.ReadInfo(ckpt).Step);
        Assert.True(File.Exists(Path.Combine(run, "model.json")));
    }
}
