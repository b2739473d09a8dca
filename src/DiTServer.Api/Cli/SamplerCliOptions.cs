using System.CommandLine;
using System.Globalization;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;

namespace DiTServer.Api.Cli;

/// <summary>The sampler flags shared by <c>sample</c>, <c>eval</c> and <c>bench generate</c>: one definition, so each
/// verb accepts and refuses the same things as <c>POST /v1/images</c> (bad input: one line, exit 2).</summary>
internal sealed class SamplerCliOptions
{
    public Option<string> Sampler { get; }
    public Option<int?> Steps { get; } = new("--steps") { Description = "Sampling steps = model calls (default per sampler: ddpm 50, ddim 10, dpmpp_2m 5, " +
        "dpmpp_3m 10, unipc 5)" };
    public Option<string?> Spacing { get; } = new("--spacing") { Description = "ODE solvers only: time_uniform (default), logsnr or time_quadratic" };
    public Option<int?> Order { get; } = new("--order") { Description = "unipc: 1, 2 (default) or 3; dpmpp_2m: 1 (DDIM) or 2 (default)" };
    public Option<string?> Variant { get; } = new("--unipc-variant") { Description = "unipc only: bh1 or bh2 (default)" };
    public Option<string?> Interval { get; } = new("--guidance-interval") { Description = "Guide only for model timesteps lo..hi, as lo,hi (0 ≤ lo < hi " +
        "≤ 1000); default always" };
    public Option<bool> Thresholding { get; } = new("--thresholding") { Description = "ODE solvers on pixel-space models: dynamic thresholding of x0 (ratio " +
        "0.995, max 1)" };

    public Option<int?> CacheInterval { get; } = new("--cache-interval") { Description = "Feature caching: run the transformer blocks on every " +
        "k-th step (and the first), reuse their output between; 1..1000, 1 = off (default)" };
    public Option<string?> CacheMode { get; } = new("--cache-mode") { Description = "With --cache-interval > 1: reuse (default, FORA) or taylor " +
        "(first-order extrapolation, TaylorSeer)" };

    public SamplerCliOptions(string defaultSampler)
    {
        Sampler = new Option<string>("--sampler")
        {
            Description = $"{SamplerNames.Alternatives(SamplerNames.Samplers.Keys)}",
            DefaultValueFactory = _ => defaultSampler,
        };
    }

    public IEnumerable<Option> All => [Sampler, Steps, Spacing, Order, Variant, Interval, Thresholding, CacheInterval, CacheMode];

    /// <summary>The options these flags give, checked by <see cref="SamplingOptions.Validate"/>.</summary>
    /// <param name="model">The model folder's own defaults (a distilled student's manifest): without <c>--sampler</c> its
    /// sampler, and for that sampler its steps, order and spacing where the flags give none; null = the server's.</param>
    /// <exception cref="UsageException">An unknown name, a malformed interval or a broken rule.</exception>
    public SamplingOptions Read(ParseResult parse, SamplingOptions rest, SamplingOptions? model = null)
    {
        bool named = parse.GetResult(Sampler) is { Implicit: false };
        var sampler = named || model is null ? SampleCommand.ParseSampler(parse.GetValue(Sampler)!) : model.Sampler;
        var own = model is not null && model.Sampler == sampler ? model : null;
        var options = rest with
        {
            Sampler = sampler,
            Steps = parse.GetValue(Steps) ?? own?.Steps ?? SamplerDefaults.Steps(sampler),
            Spacing = parse.GetValue(Spacing) is { } s ? Lookup(SamplerNames.Spacings, s, "spacing") : own?.Spacing,
            Order = parse.GetValue(Order) ?? own?.Order,
            UniPcVariant = parse.GetValue(Variant) is { } v ? Lookup(SamplerNames.Variants, v, "unipc variant") : (UniPcVariant?)null,
            GuidanceInterval = parse.GetValue(Interval) is { } i ? ParseInterval(i) : null,
            Thresholding = parse.GetValue(Thresholding),
            CacheInterval = parse.GetValue(CacheInterval) ?? 1,
            CacheMode = parse.GetValue(CacheMode) is { } m ? Lookup(SamplerNames.CacheModes, m, "cache mode") : Core.Sampling.CacheMode.Reuse,
        };
        SampleCommand.ValidateOptions(options);
        return options;
    }

    /// <summary>The options with the model's cache default (model.json <c>default_cache</c>) applied as the server applies
    /// it to a request without <c>cache_interval</c> (<see cref="CacheDefault.Resolve"/>); <c>--cache-interval</c> wins.</summary>
    public SamplingOptions WithModelCache(ParseResult parse, SamplingOptions options, CacheDefault? model)
    {
        var (interval, mode) = CacheDefault.Resolve(model, options.Sampler, options.Steps, parse.GetValue(CacheInterval),
            parse.GetValue(CacheMode) is { } m ? Lookup(SamplerNames.CacheModes, m, "cache mode") : null);
        return options with { CacheInterval = interval, CacheMode = mode };
    }

    private static T Lookup<T>(IReadOnlyDictionary<string, T> names, string value, string what) =>
        names.TryGetValue(value.Trim(), out var found) ? found
            : throw new UsageException($"unknown {what} '{value}'; use {SamplerNames.Alternatives(names.Keys)}");

    /// <summary>"lo,hi" → the interval; the range rules are <see cref="SamplingOptions.Validate"/>'s.</summary>
    internal static GuidanceInterval ParseInterval(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length == 2
            && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var lo)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var hi)
            && double.IsFinite(lo) && double.IsFinite(hi))
            return new GuidanceInterval(lo, hi);
        throw new UsageException($"--guidance-interval must be lo,hi with 0 ≤ lo < hi ≤ 1000 (model timesteps), not '{text}'");
    }
}
