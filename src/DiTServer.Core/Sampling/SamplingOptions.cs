using DiTServer.Core.Model;
using DiTServer.Core.Sampling.Solvers;

namespace DiTServer.Core.Sampling;

/// <summary>Reverse-process sampler.</summary>
public enum SamplerKind
{
    /// <summary>Ancestral sampling (Ho et al. 2020), the official sample.py default.</summary>
    Ddpm,
    /// <summary>DDIM (Song et al. 2021); deterministic with eta = 0.</summary>
    Ddim,
    /// <summary>Multistep DPM-Solver++ of order 2, data prediction (Lu et al. 2022); "DPM++ 2M".</summary>
    DpmPP2M,
    /// <summary>Multistep DPM-Solver++ of order 3, data prediction; "DPM++ 3M".</summary>
    DpmPP3M,
    /// <summary>UniPC, data prediction, order 1–3 (Zhao et al. 2023).</summary>
    UniPc,
}

/// <summary>What a cached step feeds the final layer in place of the blocks' output (<see cref="FeatureCache"/>).</summary>
public enum CacheMode
{
    /// <summary>The hidden state of the last full step, as it was (FORA, Selvaraju et al. 2024).</summary>
    Reuse,
    /// <summary>A first-order extrapolation from the last two full steps (TaylorSeer, Liu et al. 2025, order 1).</summary>
    Taylor,
}

/// <summary>Guidance only while the model timestep lies in [<see cref="Lo"/>, <see cref="Hi"/>] (both included),
/// in model-timestep units 0–1000 (Kynkäänniemi et al. 2024, arXiv 2404.07724); outside it the request runs unguided.</summary>
public readonly record struct GuidanceInterval(double Lo, double Hi)
{
    public const double Max = 1000;

    public bool Contains(double modelTimestep) => modelTimestep >= Lo && modelTimestep <= Hi;

    public override string ToString() =>
        FormattableString.Invariant($"[{Lo:R}, {Hi:R}]");
}

/// <summary>How one request is sampled. Seeding follows shared/fixtures/README.md: one CPU generator seeded with
/// <see cref="Seed"/>; it draws the initial latent, then (DDPM, or DDIM with eta &gt; 0) one noise tensor per step.
/// The ODE solvers draw nothing after the initial latent.</summary>
public sealed record SamplingOptions
{
    /// <summary>The largest guidance scale taken (every route and verb): beyond it the guided ε grows large enough for
    /// float32 to overflow in a few steps, and no image gets better.</summary>
    public const double MaxCfgScale = 20;
    /// <summary>The longest feature-cache interval taken: as many steps as the longest run has.</summary>
    public const int MaxCacheInterval = 1000;

    public SamplerKind Sampler { get; init; } = SamplerKind.Ddpm;
    public int Steps { get; init; } = 50;
    public double CfgScale { get; init; } = 4.0;
    public GuidanceMode Guidance { get; init; } = GuidanceMode.Official;
    /// <summary>DDIM only: 0 is deterministic, 1 matches DDPM's variance.</summary>
    public double Eta { get; init; }
    public long Seed { get; init; }
    /// <summary>ODE solvers only: where the steps lie in time; null = <see cref="StepSpacing.TimeUniform"/>.</summary>
    public StepSpacing? Spacing { get; init; }
    /// <summary>UniPC: 1–3; dpmpp_2m: 1 (DDIM) or 2; null = 2. dpmpp_3m takes its order from the name.</summary>
    public int? Order { get; init; }
    /// <summary>UniPC only; null = <see cref="Solvers.UniPcVariant.Bh2"/>.</summary>
    public UniPcVariant? UniPcVariant { get; init; }
    /// <summary>Guide only inside this model-timestep interval; null = always.</summary>
    public GuidanceInterval? GuidanceInterval { get; init; }
    /// <summary>ODE solvers on pixel-space models only: dynamic thresholding of x̂₀ (ratio 0.995, max 1).</summary>
    public bool Thresholding { get; init; }
    /// <summary>Feature caching: the blocks run on every <see cref="CacheInterval"/>-th step of the run (and its first);
    /// the steps between reuse or extrapolate their output. 1 = off (every step runs the blocks).</summary>
    public int CacheInterval { get; init; } = 1;
    /// <summary>What a cached step uses; only matters with <see cref="CacheInterval"/> &gt; 1.</summary>
    public CacheMode CacheMode { get; init; } = CacheMode.Reuse;

    /// <summary>The model takes the guidance scale as an input (a distilled student, <see cref="DiTConfig.GuidanceConditioned"/>):
    /// every image is one row at every step. Set from the model, never by a client; <see cref="SamplingRun"/> checks it.</summary>
    public bool GuidanceInModel { get; init; }

    /// <summary>Rows an image adds to the forward at a model timestep: two when guided by an unconditional copy, else one.
    /// The scheduler's tensor-free planning (<see cref="StepTimesteps"/>) and the run itself both count with this.</summary>
    public int RowsPerImageAt(double modelTimestep) => !GuidanceInModel && CfgScaleAt(modelTimestep) != 1.0 ? 2 : 1;

    /// <summary>The most rows an image adds to any forward of the run (admission counts these).</summary>
    public int MaxRowsPerImage => !GuidanceInModel && CfgScale != 1.0 ? 2 : 1;

    public bool IsCached => CacheInterval > 1;

    public bool IsSolver => Sampler.IsSolver();
    public StepSpacing EffectiveSpacing => Spacing ?? StepSpacing.TimeUniform;
    public int EffectiveOrder => Sampler switch
    {
        SamplerKind.DpmPP2M => Order ?? 2,
        SamplerKind.DpmPP3M => 3,
        SamplerKind.UniPc => Order ?? 2,
        _ => 1,
    };
    public UniPcVariant EffectiveUniPcVariant => UniPcVariant ?? Solvers.UniPcVariant.Bh2;

    /// <summary>The settings that reproduce a run, under their wire names and as the API spells their values, only those
    /// that apply to its sampler: the PNG metadata's sampling keys, and the settings a <see cref="NonFiniteSampleException"/> names.</summary>
    public IEnumerable<KeyValuePair<string, string>> Settings()
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        yield return new("steps", Steps.ToString(inv));
        yield return new("sampler", Sampler.Name());
        if (IsSolver)
        {
            yield return new("spacing", EffectiveSpacing.Name());
            yield return new("order", EffectiveOrder.ToString(inv));
            if (Sampler == SamplerKind.UniPc) yield return new("unipc_variant", EffectiveUniPcVariant.Name());
            if (Thresholding) yield return new("thresholding", "true");
        }
        yield return new("cfg_scale", CfgScale.ToString("R", inv));
        yield return new("guidance", Guidance.ToString().ToLowerInvariant());
        if (GuidanceInterval is { } interval) yield return new("guidance_interval", interval.ToString());
        if (Sampler == SamplerKind.Ddim) yield return new("eta", Eta.ToString("R", inv));
        if (IsCached)
        {
            // Cached steps change the pixels, so an image made with caching names its settings (without it: nothing new).
            yield return new("cache_interval", CacheInterval.ToString(inv));
            yield return new("cache_mode", CacheMode.Name());
        }
        yield return new("seed", Seed.ToString(inv));
    }

    /// <summary>The cfg scale at a model timestep: the request's own inside the guidance interval, else 1.</summary>
    public double CfgScaleAt(double modelTimestep) =>
        GuidanceInterval is { } interval && !interval.Contains(modelTimestep) ? 1.0 : CfgScale;

    /// <exception cref="ArgumentException">A rule is broken; the parameter name is the option's wire name.</exception>
    public void Validate(int numTimesteps = 1000)
    {
        if (Steps < 1 || Steps > numTimesteps) throw new ArgumentOutOfRangeException("steps", Steps, $"steps must be in 1..{numTimesteps}");
        if (!(CfgScale >= 1 && CfgScale <= MaxCfgScale))
            throw new ArgumentOutOfRangeException("cfg_scale", CfgScale, $"cfg_scale must be in 1..{MaxCfgScale}");
        if (!(Eta >= 0) || Eta > 1) throw new ArgumentOutOfRangeException("eta", Eta, "eta must be in 0..1");
        if (Seed < 0) throw new ArgumentOutOfRangeException("seed", Seed, "seed must be ≥ 0");
        if (Eta > 0 && Sampler != SamplerKind.Ddim) throw new ArgumentException("eta applies to the ddim sampler only", "eta");
        if (!IsSolver && Spacing is not null)
            throw new ArgumentException($"spacing applies to the ODE solvers only ({SamplerNames.SolverList}); {Sampler.Name()} uses the official respacing",
                "spacing");
        if (Order is { } order)
        {
            // dpmpp_2m also takes order 1: DPM-Solver++(1) is DDIM in data prediction (Lu et al. 2022), on the solvers'
            // grids; distilled students step with it (docs/training.md).
            if (Sampler == SamplerKind.DpmPP2M && order is not (1 or 2))
                throw new ArgumentException($"dpmpp_2m is order 2, or order 1 (DDIM); order {order} is dpmpp_3m or unipc", "order");
            if (Sampler is not (SamplerKind.UniPc or SamplerKind.DpmPP2M))
                throw new ArgumentException(Sampler.IsSolver()
                    ? $"order is fixed by the sampler's name ({Sampler.Name()} is order {EffectiveOrder}); order applies to unipc only"
                    : "order applies to unipc only", "order");
            if (order < 1 || order > 3) throw new ArgumentOutOfRangeException("order", order, "order must be 1, 2 or 3");
        }
        if (IsSolver && Steps < EffectiveOrder)
            throw new ArgumentOutOfRangeException("steps", Steps, $"steps must be at least the solver's order ({EffectiveOrder}) for {Sampler.Name()}");
        if (UniPcVariant is not null && Sampler != SamplerKind.UniPc)
            throw new ArgumentException("unipc_variant applies to unipc only; use bh1 or bh2 with sampler unipc", "unipc_variant");
        if (GuidanceInterval is { } gi && (!(gi.Lo >= 0) || !(gi.Hi <= Sampling.GuidanceInterval.Max) || !(gi.Lo < gi.Hi)))
            throw new ArgumentOutOfRangeException("guidance_interval", gi.ToString(),
                "guidance_interval must be [lo, hi] with 0 ≤ lo < hi ≤ 1000 (model timesteps)");
        if (Thresholding && !IsSolver)
            throw new ArgumentException($"thresholding applies to the ODE solvers only ({SamplerNames.SolverList})", "thresholding");
        if (CacheInterval < 1 || CacheInterval > MaxCacheInterval)
            throw new ArgumentOutOfRangeException("cache_interval", CacheInterval, $"cache_interval must be in 1..{MaxCacheInterval} (1 = no caching)");
        if (!Enum.IsDefined(CacheMode)) throw new ArgumentOutOfRangeException("cache_mode", CacheMode, "cache_mode must be reuse or taylor");
    }
}
