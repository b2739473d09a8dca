namespace DiTServer.Core.Serving;

/// <summary>A request's wish for step previews: after every <see cref="Every"/>-th step (never the last, which the
/// finished images follow), a PNG of each image's predicted x₀, at most <see cref="MaxSide"/> pixels on a side,
/// handed to <see cref="Sink"/>.</summary>
/// <remarks>The sink is called from a thread-pool thread (PNG encoding stays off the worker), in step order, and
/// always before the request's task completes. Like <see cref="GenerationRequest.Progress"/> it must return at once
/// and never throw; a preview that cannot be made is logged and skipped, never failing the request.</remarks>
public sealed record PreviewRequest
{
    public PreviewRequest(int every, int maxSide, IProgress<GenerationPreview> sink)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(every, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSide, 1);
        Every = every;
        MaxSide = maxSide;
        Sink = sink;
    }

    public int Every { get; }
    public int MaxSide { get; }
    public IProgress<GenerationPreview> Sink { get; }

    /// <summary>Whether the step that brings the run to <paramref name="stepsDone"/> of <paramref name="totalSteps"/> makes a preview.</summary>
    public bool Wants(int stepsDone, int totalSteps) => stepsDone % Every == 0 && stepsDone < totalSteps;
}
