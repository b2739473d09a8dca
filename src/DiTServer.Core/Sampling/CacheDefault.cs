namespace DiTServer.Core.Sampling;

/// <summary>A model's feature-caching default for long samplers (model.json's <c>default_cache</c>): a request with
/// DDPM or DDIM and at least <see cref="MinSteps"/> steps that names no <c>cache_interval</c> runs with
/// <see cref="Interval"/> and (unless it names one) <see cref="Mode"/>; every other request runs uncached unless it asks.</summary>
/// <remarks>Why only DDPM and DDIM at many steps: that is where caching was measured against the uncached sampler
/// (docs/samplers.md, the quality table with intervals), and where it pays: a step of a 50-step sampler moves the
/// hidden state little, while a 5-step solver's steps are far apart and its multistep history amplifies a stale input.</remarks>
/// <param name="Interval">The blocks run on every Interval-th step (and the first); at least 2.</param>
/// <param name="Mode">What the steps between read.</param>
/// <param name="MinSteps">The fewest steps a request needs for the default to apply.</param>
public sealed record CacheDefault(int Interval, CacheMode Mode, int MinSteps)
{
    /// <summary>The samplers the default applies to (the others are never cached unless a request asks).</summary>
    public static readonly IReadOnlyList<SamplerKind> Samplers = [SamplerKind.Ddpm, SamplerKind.Ddim];

    /// <summary>Whether a request with this sampler and step count that names no <c>cache_interval</c> gets the default.</summary>
    public bool AppliesTo(SamplerKind sampler, int steps) => Samplers.Contains(sampler) && steps >= MinSteps;

    /// <summary>The cache settings of a request: its own interval wins; without one, the model's default where it
    /// applies, else none (1). Its own mode wins; without one, the default's mode where the default's interval is used,
    /// else <see cref="CacheMode.Reuse"/>.</summary>
    /// <param name="model">The served model's default; null when its manifest declares none.</param>
    public static (int Interval, CacheMode Mode) Resolve(CacheDefault? model, SamplerKind sampler, int steps, int? interval, CacheMode? mode)
    {
        if (interval is { } asked) return (asked, mode ?? CacheMode.Reuse);
        if (model is { } d && d.AppliesTo(sampler, steps)) return (d.Interval, mode ?? d.Mode);
        return (1, mode ?? CacheMode.Reuse);
    }

    /// <summary>One line for descriptions (Swagger, the CLI, the playground's hint reads the same fields from /v1/models).</summary>
    public string Describe() =>
        $"cache_interval {Interval}, cache_mode {Mode.Name()} for {string.Join("/", Samplers.Select(s => s.Name()))} with at least {MinSteps} steps";
}
