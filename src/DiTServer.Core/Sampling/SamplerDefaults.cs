namespace DiTServer.Core.Sampling;

/// <summary>What a request gets when it names no sampler or no step count: one table for the API, the CLI and
/// <c>GET /v1/models</c>. See docs/samplers.md for the measurements behind the choice.</summary>
public static class SamplerDefaults
{
    /// <summary>The sampler of a request that names none.</summary>
    public const SamplerKind Sampler = SamplerKind.Ddpm;

    /// <summary>Steps of a request that names a sampler but no steps.</summary>
    public static int Steps(SamplerKind sampler) => sampler switch
    {
        SamplerKind.Ddpm => 50,
        SamplerKind.Ddim => 50,
        SamplerKind.DpmPP2M => 20,
        SamplerKind.DpmPP3M => 20,
        SamplerKind.UniPc => 20,
        _ => throw new ArgumentOutOfRangeException(nameof(sampler), sampler, null),
    };
}
