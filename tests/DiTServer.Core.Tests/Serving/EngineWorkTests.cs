using DiTServer.Core.Pipeline;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Logging.Abstractions;

namespace DiTServer.Core.Tests;

/// <summary>Tensor work that is no generation (a variation's class guess) runs on a worker thread, never the caller's,
/// and a worker that has stopped fails it at once instead of leaving its caller waiting.</summary>
public class EngineWorkTests
{
    [Fact]
    public async Task Work_runs_on_the_worker_thread_and_fails_once_the_worker_has_stopped()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var options = new ServingOptions { WarmUp = false };
        var engine = new GenerationEngine(new ModelRunner(loaded), new Scheduler(options), options, NullServingObserver.Instance, NullLogger.Instance);
        var loop = engine.Start();

        var (thread, model) = await engine.RunOnWorkerAsync(m => (Thread.CurrentThread.Name, m)).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.StartsWith("dit-worker-", thread);
        Assert.Same(loaded, model);
        // An exception is the caller's, and the worker goes on.
        await Assert.ThrowsAsync<InvalidDataException>(() => engine.RunOnWorkerAsync<int>(_ => throw new InvalidDataException("bad picture")));
        Assert.Equal(7, await engine.RunOnWorkerAsync(_ => 7).WaitAsync(TimeSpan.FromMinutes(1)));
        // Work whose caller has gone is not run.
        using var gone = new CancellationTokenSource();
        gone.Cancel();
        bool ran = false;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.RunOnWorkerAsync(_ => ran = true, gone.Token));
        Assert.False(ran);

        engine.Abort();
        await loop.WaitAsync(TimeSpan.FromMinutes(1));
        var late = await Assert.ThrowsAsync<InvalidOperationException>(() => engine.RunOnWorkerAsync(_ => 1).WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Contains("not running", late.Message);
    }
}
