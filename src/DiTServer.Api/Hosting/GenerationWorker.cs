namespace DiTServer.Api.Hosting;

/// <summary>Hosts the device's <see cref="GenerationEngine"/>: starts its thread with the app and stops it gracefully
/// (no new work, queued requests answered 503 at once, running ones finished within <c>Serving:DrainTimeout</c>, then
/// answered 503 too), so that every accepted request has its answer before the host's shutdown timeout.</summary>
/// <remarks>The drain time runs on the app's <see cref="TimeProvider"/>, so a test moves it by hand.</remarks>
public sealed class GenerationWorker(GenerationEngine engine, IOptions<ServingOptions> options, TimeProvider time, ILogger<GenerationWorker> logger)
    : BackgroundService, IHostedLifecycleService
{
    private Task loop = Task.CompletedTask;
    private ITimer? drainDeadline;

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        loop = engine.Start();
        return loop;
    }

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Runs before any hosted service's StopAsync, in particular before Kestrel's, which waits for every open
    /// request and aborts the connections still open when the host's shutdown timeout is up. Stopping here, not in
    /// <see cref="StopAsync"/> (which the host calls only after Kestrel has drained), is what gets queued requests their
    /// 503 now instead of running them while Kestrel waits, and cuts running ones off while their answers can still go out.</summary>
    public Task StoppingAsync(CancellationToken cancellationToken)
    {
        var drain = options.Value.DrainTimeout;
        var s = engine.Snapshot();
        logger.LogInformation("Stopping: {Queued} queued request(s) are answered 503; {Running} running get up to {Drain} to finish",
            s.QueueDepth, s.ActiveRequests, drain);
        // The deadline is set before the queue closes: whoever sees the queue closed may count on the drain time running.
        drainDeadline ??= time.CreateTimer(_ => engine.Abort(), null, drain, Timeout.InfiniteTimeSpan);
        engine.BeginShutdown();
        return Task.CompletedTask;
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        engine.BeginShutdown(); // idempotent; StopAsync stays correct on its own
        using (cancellationToken.Register(engine.Abort))
            await base.StopAsync(cancellationToken);
        // After Abort the loop ends at the next step boundary; the model must not be disposed under a running forward.
        await loop;
    }

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Dispose()
    {
        drainDeadline?.Dispose();
        base.Dispose();
    }
}
