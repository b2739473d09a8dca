namespace DiTServer.Api.Jobs;

/// <summary>Forgets expired job results even when no request comes in (the store also sweeps on every call).</summary>
public sealed class JobSweeper(JobStore store, IOptions<JobOptions> options, TimeProvider time) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var period = TimeSpan.FromTicks(Math.Clamp(options.Value.ResultTtl.Ticks / 2, TimeSpan.TicksPerSecond, TimeSpan.TicksPerMinute));
        using var timer = new PeriodicTimer(period, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken)) store.Sweep();
        }
        catch (OperationCanceledException) { }
    }
}
