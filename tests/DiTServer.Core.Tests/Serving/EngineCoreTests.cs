using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Logging.Abstractions;

namespace DiTServer.Core.Tests;

/// <summary>The worker loop on the tiny model with a recording observer: what it reports, in the order it reports it.</summary>
public class EngineCoreTests
{
    /// <summary>Every observer call in order, "forward" or "occupancy queued/active".</summary>
    private sealed class Recorder : IServingObserver
    {
        private readonly Lock gate = new();
        private readonly List<string> events = [];

        public IReadOnlyList<string> Events { get { lock (gate) return events.ToList(); } }
        private void Add(string e) { lock (gate) events.Add(e); }

        public void Admitted(TimeSpan queueWait) { }
        public void Forward(int rows, int requests, TimeSpan duration) => Add("forward");
        public void ImagesGenerated(int count) { }
        public void WorkerError() => Add("error");
        public void Occupancy(int queued, int active) => Add($"occupancy {queued}/{active}");
    }

    [Fact]
    public async Task Occupancy_is_published_once_per_step_after_its_update()
    {
        const int Steps = 5;
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var options = new ServingOptions { WarmUp = false, IntraOpThreads = 1 };
        var scheduler = new Scheduler(options);
        var recorder = new Recorder();
        var engine = new GenerationEngine(new ModelRunner(loaded), scheduler, options, recorder, NullLogger.Instance);
        var loop = engine.Start();
        var request = new GenerationRequest("r", new GenerationParameters(1, 1, new SamplingOptions { Steps = Steps, CfgScale = 1, Seed = 3 }),
            TimeSpan.FromMinutes(5), CancellationToken.None);
        Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(request));
        await request.Completion.WaitAsync(TimeSpan.FromMinutes(2));
        engine.BeginShutdown();
        await loop.WaitAsync(TimeSpan.FromMinutes(1));

        var events = recorder.Events;
        var forwards = events.Select((e, i) => (e, i)).Where(x => x.e == "forward").Select(x => x.i).ToList();
        Assert.Equal(Steps, forwards.Count);
        Assert.DoesNotContain("error", events);
        // Exactly one report per step, just before the step's forward is reported: the request runs (nothing queued)
        // until the update of its last step has removed it.
        var reports = forwards.Select((at, k) => events.Skip(k == 0 ? 0 : forwards[k - 1] + 1).Take(at - (k == 0 ? 0 : forwards[k - 1] + 1))
            .Where(e => e.StartsWith("occupancy", StringComparison.Ordinal)).ToList()).ToList();
        Assert.All(reports.Skip(1), r => Assert.Single(r));
        Assert.Equal(Enumerable.Repeat("occupancy 0/1", Steps - 1).Append("occupancy 0/0"), reports.Select(r => r[^1]));
        Assert.All(events.Skip(forwards[^1] + 1), e => Assert.Equal("occupancy 0/0", e));
    }
}
