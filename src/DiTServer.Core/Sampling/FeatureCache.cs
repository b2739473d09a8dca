using static TorchSharp.torch;

namespace DiTServer.Core.Sampling;

/// <summary>One run's feature cache: the output of the DiT's blocks (the hidden state the final layer reads) from its
/// last full steps, for every row the run adds to a forward (cond rows, then uncond rows when guided).</summary>
/// <remarks>
/// What is cached, and why not what the papers cache: FORA (Selvaraju et al. 2024, arXiv 2407.01425) keeps the output of
/// every block's attention and MLP and, on cached steps, still adds them into the residual stream with the gates of the
/// current c; TaylorSeer (Liu et al. 2025, arXiv 2503.06923; its <c>derivative_approximation</c> /
/// <c>taylor_formula</c>) forecasts those same per-layer attention and MLP features with finite differences over its
/// "activated" (full) steps. We cache one tensor instead: the output of the last block. A cached row then skips the
/// whole block stack (no per-block adaLN linears, norms or residual passes, which at our sizes cost as much as the
/// matmuls), the cache holds one (rows, T, D) tensor per run instead of 2·depth of them, and only the adaLN-conditioned
/// final layer and the solver see the current timestep. Reuse of the stack's output is FORA with its one cache point
/// moved to the end of the stack; "taylor" is TaylorSeer's order-1 formula on that point:
/// h(s) ≈ h(s₁) + (h(s₁) − h(s₀))·(s − s₁)/(s₁ − s₀), s₀ &lt; s₁ the last two full steps (step units).
/// The run owns this object; <see cref="SamplingRun.Dispose"/> frees its tensors.
/// </remarks>
public sealed class FeatureCache : IDisposable
{
    private Tensor? last, previous;
    private int lastStep, previousStep;

    public FeatureCache(int interval, CacheMode mode)
    {
        if (interval < 1) throw new ArgumentOutOfRangeException(nameof(interval), interval, "the cache interval is at least 1");
        Interval = interval;
        Mode = mode;
    }

    public int Interval { get; }
    public CacheMode Mode { get; }

    /// <summary>Whether the run's forward at <paramref name="step"/> (0-based, its steps done) must run the blocks for
    /// its <paramref name="rows"/> rows: every interval-th step and the first; with taylor also until two full steps
    /// are known; and whenever the cache holds another row count (a guidance interval's edge adds or drops the
    /// unconditional rows, whose hidden states were never computed).</summary>
    public bool IsFullStep(int step, int rows)
    {
        if (Interval == 1 || step % Interval == 0 || last is null || last.shape[0] != rows) return true;
        return Mode == CacheMode.Taylor && previous is null;
    }

    /// <summary>Keeps the blocks' output of a full step (rows, T, D); the cache takes ownership (outside any dispose scope).</summary>
    public void Store(int step, Tensor hidden)
    {
        if (Interval == 1) { hidden.Dispose(); return; } // nothing will read it
        previous?.Dispose();
        previous = null;
        if (Mode == CacheMode.Taylor && last is not null && last.shape[0] == hidden.shape[0])
        {
            (previous, previousStep) = (last, lastStep);
        }
        else last?.Dispose();
        (last, lastStep) = (hidden, step);
    }

    /// <summary>The stand-in for the blocks' output at a cached <paramref name="step"/> (rows, T, D), in the caller's
    /// dispose scope.</summary>
    public Tensor Predict(int step)
    {
        if (last is null) throw new InvalidOperationException("the feature cache is empty: this step must run the blocks");
        if (Mode == CacheMode.Reuse) return last.alias();
        if (previous is null) throw new InvalidOperationException("taylor needs two full steps before it can extrapolate");
        double k = (double)(step - lastStep) / (lastStep - previousStep);
        return last + (last - previous) * k;
    }

    /// <summary>Most bytes the cache of a run of <paramref name="rows"/> rows holds (what admission counts): one
    /// (rows, T, D) float32 hidden state, two for taylor; nothing without caching.</summary>
    /// <param name="rowBytes">One row's hidden state: <see cref="RowBytes"/>.</param>
    public static long MaxBytes(int rows, long rowBytes, int interval, CacheMode mode) =>
        interval == 1 ? 0 : rows * rowBytes * (mode == CacheMode.Taylor ? 2 : 1);

    /// <summary>Bytes of one row's hidden state, T × D float32 (an upper bound where the model runs in half precision).</summary>
    public static long RowBytes(Model.DiTConfig config) => (long)config.NumPatches * config.HiddenSize * sizeof(float);

    /// <summary>Bytes the cached tensors hold now.</summary>
    public long Bytes => (last is null ? 0 : last.NumberOfElements * last.ElementSize)
        + (previous is null ? 0 : previous.NumberOfElements * previous.ElementSize);

    public void Dispose()
    {
        last?.Dispose();
        previous?.Dispose();
        last = previous = null;
    }
}
