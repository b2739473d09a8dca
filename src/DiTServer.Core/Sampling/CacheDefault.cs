namespace DiTServer.Core.Sampling;

/// <summary>A model's feature-caching default for long samplers (model.json's <c>default_cache</c>): a DDIM request
/// with at least <see cref="MinSteps"/> steps that names no <c>cache_interval</c> runs with <see cref="Interval"/> and
/// (unless it names one) <see cref="Mode"/>; every other request runs uncached unless it asks.</summary>
/// <remarks>Why only DDIM at many steps, from docs/samplers.md's cache study (demo model, paired with the uncached
/// sampler on the same seeds): DDIM-50 cached every 3rd or 5th step with taylor judged the same as uncached on every
/// metric, while DDPM-50, which adds fresh noise at every step that a cached hidden state has not seen, held only at
/// interval 2, lost recall at 3 and everything at 5; and a few-step solver's steps lie far apart, its multistep history carrying a stale
/// input on (not measured). The published caching results on DiT-XL/2 are DDIM-50 too.</remarks>
/// <param name="Interval">The blocks run on every Interval-th step (and the first); at least 2.</param>
/// <param name="Mode">What the steps between read.</param>
/// <param name="MinSteps">The fewest steps a request needs for the default to apply.</param>
public sealed record CacheDefault(int Interval, CacheMode Mode, int MinSteps)
{
    /// <summary>The samplers the default applies to (the others are never cached unless a request asks).</summary>
    public static readonly IReadOnlyList<SamplerKind> Samplers = [SamplerKind.Ddim];

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
