using DiTServer.Core.Serving;
using DiTServer.Api.Observability;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;

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
        if (StepDelay > TimeSpan.Zero)
            builder.ConfigureTestServices(services => services.AddSingleton<IServingObserver>(
                sp => new SlowObserver(sp.GetRequiredService<ServingMetrics>(), StepDelay)));
        if (ConfigureServices is { } configure) builder.ConfigureTestServices(configure);
    }

    /// <summary>Replaces or adds services after the app's own registration (e.g. an <see cref="IRunnerFaultInjector"/>).</summary>
    public Action<IServiceCollection>? ConfigureServices { get; init; }

    /// <summary>Sleeps this long after every forward on the worker thread, so "long" requests stay long on any machine.</summary>
    public TimeSpan StepDelay { get; init; }

    public GenerationEngine Engine => Services.GetRequiredService<GenerationEngine>();

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

/// <summary>The real metrics, plus a pause after every forward (test-only throttle of the worker thread).</summary>
internal sealed class SlowObserver(IServingObserver inner, TimeSpan delay) : IServingObserver
{
    public void Admitted(TimeSpan queueWait) => inner.Admitted(queueWait);
    public void Forward(int rows, int requests, TimeSpan duration)
    {
        inner.Forward(rows, requests, duration);
        Thread.Sleep(delay);
    }
    public void ImagesGenerated(int count) => inner.ImagesGenerated(count);
    public void WorkerError() => inner.WorkerError();
    public void Occupancy(int queued, int active) => inner.Occupancy(queued, active);
    public void WorkerTensors(long live) => inner.WorkerTensors(live);
    public void Paused(int runs) => inner.Paused(runs);
}
