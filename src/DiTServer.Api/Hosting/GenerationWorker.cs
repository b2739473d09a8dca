using DiTServer.Core.Serving;

namespace DiTServer.Api.Hosting;

/// <summary>Hosts the device's <see cref="GenerationEngine"/>: starts its thread with the app and stops it gracefully
/// (no new work, queued requests answered 503, running ones finished until the host's shutdown timeout, then failed).</summary>
public sealed class GenerationWorker(GenerationEngine engine) : BackgroundService
{
    private Task loop = Task.CompletedTask;

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        loop = engine.Start();
        return loop;
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        engine.BeginShutdown();
        using (cancellationToken.Register(engine.Abort))
            await base.StopAsync(cancellationToken);
        // After Abort the loop ends at the next step boundary; the model must not be disposed under a running forward.
        await loop;
    }
}
