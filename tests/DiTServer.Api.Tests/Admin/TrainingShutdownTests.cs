using DiTServer.Bench.Evidence;

namespace DiTServer.Api.Tests;

/// <summary>SIGTERM to the real server (a child process) while an admin job fine-tunes the served model: exit 0 within
/// the host's shutdown timeout and a loadable checkpoint at least at the step reached (the CI version of
/// <c>bench faults</c>' training run). Before the fix: exit 139 (SIGSEGV in libtorch) and no checkpoint.</summary>
public sealed class TrainingShutdownTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-train-sigterm-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public async Task Sigterm_during_an_admin_training_job_writes_a_checkpoint_exits_0_and_the_next_process_resumes_it()
    {
        var settings = TrainingShutdown.Settings(root, side: 28, classes: 10);
        settings["Serving__IntraOpThreads"] = "1";
        var model = Path.Combine(RepositoryPaths.Root, "models", "dit-fashion-mnist");
        TrainingShutdown.Report r;
        await using (var server = await ChildServer.StartAsync(model, settings, TimeSpan.FromMinutes(1)))
            r = await TrainingShutdown.RunAsync(server, Path.Combine(root, "runs"), minSteps: 3, exitTimeout: TimeSpan.FromSeconds(40));
        var why = $"{r.Summary()}\n{r.Log}";
        Assert.True(r.ExitCode == 0, why);
        Assert.True(r.CheckpointError is null, why);
        Assert.True(r.CheckpointStep >= r.StepAtSignal, why);
        Assert.True(r.ExitAfter < TimeSpan.FromSeconds(30), why);

        // The next process lists the run and resumes it through the API to its end.
        await using var restarted = await ChildServer.StartAsync(model, settings, TimeSpan.FromMinutes(1));
        var (listed, listedStep, final, finalStep) = await TrainingShutdown.ResumeAfterRestartAsync(restarted, moreSteps: 2);
        Assert.Equal("Interrupted", listed);
        Assert.Equal(r.CheckpointStep, listedStep);
        Assert.Equal("Succeeded", final);
        Assert.Equal(listedStep + 2, finalStep);
    }
}
