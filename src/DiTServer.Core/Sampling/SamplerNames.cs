using DiTServer.Core.Sampling.Solvers;

namespace DiTServer.Core.Sampling;

/// <summary>The wire names of samplers, spacings and UniPC variants (API fields, CLI flags, PNG metadata), and their
/// parsing: case-insensitive, so "logSNR" (the authors' spelling) and "logsnr" are the same.</summary>
public static class SamplerNames
{
    public static readonly IReadOnlyDictionary<string, SamplerKind> Samplers = new Dictionary<string, SamplerKind>(StringComparer.OrdinalIgnoreCase)
    {
        ["ddpm"] = SamplerKind.Ddpm,
        ["ddim"] = SamplerKind.Ddim,
        ["dpmpp_2m"] = SamplerKind.DpmPP2M,
        ["dpmpp_3m"] = SamplerKind.DpmPP3M,
        ["unipc"] = SamplerKind.UniPc,
    };

    public static readonly IReadOnlyDictionary<string, StepSpacing> Spacings = new Dictionary<string, StepSpacing>(StringComparer.OrdinalIgnoreCase)
    {
        ["time_uniform"] = StepSpacing.TimeUniform,
        ["logsnr"] = StepSpacing.LogSnr,
        ["time_quadratic"] = StepSpacing.TimeQuadratic,
    };

    public static readonly IReadOnlyDictionary<string, UniPcVariant> Variants = new Dictionary<string, UniPcVariant>(StringComparer.OrdinalIgnoreCase)
    {
        ["bh1"] = UniPcVariant.Bh1,
        ["bh2"] = UniPcVariant.Bh2,
    };

    public static readonly IReadOnlyDictionary<string, CacheMode> CacheModes = new Dictionary<string, CacheMode>(StringComparer.OrdinalIgnoreCase)
    {
        ["reuse"] = CacheMode.Reuse,
        ["taylor"] = CacheMode.Taylor,
    };

    public static string SolverList => "dpmpp_2m, dpmpp_3m, unipc";

    public static bool IsSolver(this SamplerKind kind) => kind is SamplerKind.DpmPP2M or SamplerKind.DpmPP3M or SamplerKind.UniPc;

    public static string Name(this SamplerKind kind) => Samplers.First(p => p.Value == kind).Key;

    public static string Name(this StepSpacing spacing) => Spacings.First(p => p.Value == spacing).Key;

    public static string Name(this CacheMode mode) => CacheModes.First(p => p.Value == mode).Key;

    public static string Name(this UniPcVariant variant) => Variants.First(p => p.Value == variant).Key;

    /// <summary>"a, b or c" for error messages.</summary>
    public static string Alternatives(IEnumerable<string> names)
    {
        var list = names.ToList();
        return list.Count == 1 ? list[0] : string.Join(", ", list.Take(list.Count - 1)) + " or " + list[^1];
    }
}
