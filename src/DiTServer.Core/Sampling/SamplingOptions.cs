using DiTServer.Core.Model;

namespace DiTServer.Core.Sampling;

/// <summary>Reverse-process sampler.</summary>
public enum SamplerKind
{
    /// <summary>Ancestral sampling (Ho et al. 2020), the official sample.py default.</summary>
    Ddpm,
    /// <summary>DDIM (Song et al. 2021); deterministic with eta = 0.</summary>
    Ddim,
}

/// <summary>How one request is sampled. Seeding follows shared/fixtures/README.md: one CPU generator seeded with
/// <see cref="Seed"/>; it draws the initial latent, then (DDPM, or DDIM with eta &gt; 0) one noise tensor per step.</summary>
public sealed record SamplingOptions
{
    public SamplerKind Sampler { get; init; } = SamplerKind.Ddpm;
    public int Steps { get; init; } = 50;
    public double CfgScale { get; init; } = 4.0;
    public GuidanceMode Guidance { get; init; } = GuidanceMode.Official;
    /// <summary>DDIM only: 0 is deterministic, 1 matches DDPM's variance.</summary>
    public double Eta { get; init; }
    public long Seed { get; init; }

    public void Validate(int numTimesteps = 1000)
    {
        if (Steps < 1 || Steps > numTimesteps) throw new ArgumentOutOfRangeException(nameof(Steps), Steps, $"steps must be in 1..{numTimesteps}");
        if (!(CfgScale >= 1) || double.IsInfinity(CfgScale)) throw new ArgumentOutOfRangeException(nameof(CfgScale), CfgScale, "cfg_scale must be a finite number ≥ 1");
        if (!(Eta >= 0) || Eta > 1) throw new ArgumentOutOfRangeException(nameof(Eta), Eta, "eta must be in 0..1");
        if (Seed < 0) throw new ArgumentOutOfRangeException(nameof(Seed), Seed, "seed must be ≥ 0");
        if (Eta > 0 && Sampler != SamplerKind.Ddim) throw new ArgumentException("eta applies to the ddim sampler only");
    }
}
