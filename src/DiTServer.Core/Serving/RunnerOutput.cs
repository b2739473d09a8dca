namespace DiTServer.Core.Serving;

/// <summary>What the runner did with one <see cref="SchedulerOutput"/> (vLLM's <c>ModelRunnerOutput</c>): bytes and
/// errors, never tensors.</summary>
/// <param name="Failed">Runs that could not start, step or be decoded, with why; their runner state is freed.</param>
/// <param name="Previews">Previews rendered after this step, or why one could not be (a preview never fails its run).</param>
/// <param name="Finished">Runs whose last step this was, with their decoded images (HWC bytes); their state is freed.</param>
/// <param name="FullSteps">Runs of this step whose rows went through the DiT's blocks.</param>
/// <param name="CachedSteps">Runs of this step that used their feature cache instead (cache_interval).</param>
public sealed record RunnerOutput(
    IReadOnlyDictionary<ScheduledRun, RunFailure> Failed,
    IReadOnlyList<RenderedPreview> Previews,
    IReadOnlyList<(ScheduledRun Run, byte[][] Images)> Finished,
    int FullSteps = 0,
    int CachedSteps = 0)
{
    public static RunnerOutput Empty { get; } = new(new Dictionary<ScheduledRun, RunFailure>(), [], []);
}

/// <summary>Why a run failed in the runner: <see cref="What"/> says where ("generation failed", "decoding failed").</summary>
public sealed record RunFailure(string What, Exception Error);

/// <summary>A run's preview after a step: images as HWC bytes of <see cref="Side"/>² pixels, or the error.</summary>
public sealed record RenderedPreview(ScheduledRun Run, byte[][]? Hwc, int Side, int Channels, Exception? Error);
