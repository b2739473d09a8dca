namespace DiTServer.Core.Sampling;

/// <summary>What a request gets when it names no sampler or no step count: one table for the API, the CLI and
/// <c>GET /v1/models</c>.</summary>
/// <remarks>Chosen from the sampler study of docs/samplers.md (demo model, cfg 4, `eval`): the default is the setting
/// with the fewest model calls whose classifier accuracy is at least 0.97× DDPM-250's and whose FID is at most
/// DDPM-250's / 0.97 (ties: the better FID), and each sampler's default steps are its own fewest passing steps.
/// dpmpp_3m was not measured; it gets dpmpp_2m's 10-step setting, the best FID of the study without an interval.</remarks>
public static class SamplerDefaults
{
    /// <summary>The sampler of a request that names none: UniPC (order 2, bh2, time-uniform), 5 steps.</summary>
    public const SamplerKind Sampler = SamplerKind.UniPc;

    /// <summary>Steps of a request that names a sampler but no steps.</summary>
    public static int Steps(SamplerKind sampler) => sampler switch
    {
        SamplerKind.Ddpm => 50,
        SamplerKind.Ddim => 10,
        SamplerKind.DpmPP2M => 5,
        SamplerKind.DpmPP3M => 10,
        SamplerKind.UniPc => 5,
        _ => throw new ArgumentOutOfRangeException(nameof(sampler), sampler, null),
    };
}
