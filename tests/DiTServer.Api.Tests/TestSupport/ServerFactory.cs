using DiTServer.Core.Serving;
using DiTServer.Api.Observability;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

// The servers under test share two cores with each other; one at a time keeps timing-based tests honest.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace DiTServer.Api.Tests;

/// <summary>The real Program on the fixtures' tiny model, with serving settings overridden per test class.</summary>
public sealed class ServerFactory(params (string Key, string Value)[] settings) : WebApplicationFactory<Program>
{
    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("DiT:Model", TestPaths.TinyModel);
        foreach (var (key, value) in settings) builder.UseSetting(key, value);
        if (StepDelay > TimeSpan.Zero || Gate is not null)
            builder.ConfigureTestServices(services => services.AddSingleton<IServingObserver>(
                sp => new SlowObserver(sp.GetRequiredService<ServingMetrics>(), StepDelay, Gate)));
        if (Clock is { } clock) builder.ConfigureTestServices(services => services.AddSingleton<TimeProvider>(clock));
        if (ConfigureServices is { } configure) builder.ConfigureTestServices(configure);
    }

    /// <summary>The server's clock (request deadlines, job retention) when the test moves time by hand; null: the real one.</summary>
    public FakeTimeProvider? Clock { get; init; }

    /// <summary>Replaces or adds services after the app's own registration (e.g. an <see cref="IRunnerFaultInjector"/>).</summary>
    public Action<IServiceCollection>? ConfigureServices { get; init; }

    /// <summary>Sleeps this long after every forward on the worker thread, so "long" requests stay long on any machine.</summary>
    public TimeSpan StepDelay { get; init; }

    /// <summary>Holds the worker after every forward until the test allows more (null: never held).</summary>
    public StepGate? Gate { get; init; }

    public GenerationEngine Engine => Services.GetRequiredService<GenerationEngine>();

    /// <summary>Lets the worker take one forward at a time until <paramref name="condition"/> holds: what happens
    /// "at the next step" (a cancelled run leaving, a queued one admitted) is awaited without assuming how fast the
    /// machine is, and never more than <paramref name="maxForwards"/> forwards are allowed.</summary>
    public async Task StepUntil(Func<EngineSnapshot, bool> condition, string what, int maxForwards = 20)
    {
        for (int allowed = 0; !condition(Engine.Snapshot()); allowed++)
        {
            if (allowed == maxForwards) throw new TimeoutException($"{maxForwards} forwards did not bring {what}; engine: {Engine.Snapshot()}");
            long passes = Gate!.Passes;
            Gate.Allow();
            // Held again after the next forward: by then the worker has scheduled after the step it was let through and
            // published the result (a cancelled run gone, a queued one admitted). A worker left idle is never held again:
            // then the condition must hold.
            await WaitFor(s => (Gate.Passes > passes && Gate.Held) || condition(s), $"the worker to take a forward towards {what}");
        }
    }

    public override async ValueTask DisposeAsync()
    {
        Gate?.Open(); // a held worker would hold the host's shutdown
        await base.DisposeAsync();
    }

    protected override void Dispose(bool disposing)
    {
        Gate?.Open();
        base.Dispose(disposing);
    }

    /// <summary>Polls the engine until <paramref name="condition"/> holds (the worker runs on its own thread).</summary>
    public async Task WaitFor(Func<EngineSnapshot, bool> condition, string what, double seconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition(Engine.Snapshot()))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"waited {seconds} s for {what}; engine: {Engine.Snapshot()}");
            await Task.Delay(10);
        }
    }
}

/// <summary>Holds the worker thread after every forward until the test allows it on: a request of N steps cannot finish
/// before the test has allowed N forwards, on any machine.</summary>
/// <param name="open">Start open (every forward passes) until <see cref="Close"/>.</param>
public sealed class StepGate(bool open = false)
{
    private readonly SemaphoreSlim permits = new(0);
    private volatile bool open = open;
    private int arrivals, passes;

    /// <summary>Forwards that have reached the gate, held or let through: a test that allows one waits for this to grow
    /// to know the worker ran the next forward (the engine counts a forward only once it is let through).</summary>
    public int Arrivals => Volatile.Read(ref arrivals);

    /// <summary>Forwards the gate has let through.</summary>
    public int Passes => Volatile.Read(ref passes);

    /// <summary>The worker waits in the gate now.</summary>
    public bool Held => Arrivals > Passes;

    public void Allow(int forwards = 1) => permits.Release(forwards);

    /// <summary>Lets every later forward through.</summary>
    public void Open()
    {
        open = true;
        permits.Release();
    }

    /// <summary>Holds the worker again after its next forward.</summary>
    public void Close()
    {
        while (permits.CurrentCount > 0) permits.Wait(0);
        open = false;
    }

    /// <summary>Waits for a permit; after a minute it lets the worker go on, so a test that forgot to allow a step fails
    /// by its own checks rather than hanging the run.</summary>
    internal void Pass()
    {
        Interlocked.Increment(ref arrivals);
        for (int waited = 0; !open && !permits.Wait(100) && waited < 60_000; waited += 100) { }
        Interlocked.Increment(ref passes);
    }
}

/// <summary>The real metrics, plus a pause or a <see cref="StepGate"/> after every forward (test-only throttle of the worker thread).</summary>
internal sealed class SlowObserver(IServingObserver inner, TimeSpan delay, StepGate? gate) : IServingObserver
{
    public void Admitted(TimeSpan queueWait) => inner.Admitted(queueWait);
    public void Forward(int rows, int requests, TimeSpan duration)
    {
        inner.Forward(rows, requests, duration);
        if (delay > TimeSpan.Zero) Thread.Sleep(delay);
        gate?.Pass();
    }
    public void ImagesGenerated(int count) => inner.ImagesGenerated(count);
    public void WorkerError() => inner.WorkerError();
    public void Occupancy(int queued, int active) => inner.Occupancy(queued, active);
    public void WorkerTensors(long live) => inner.WorkerTensors(live);
    public void Paused(int runs) => inner.Paused(runs);
}
