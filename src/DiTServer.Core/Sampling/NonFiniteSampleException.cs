using System.Globalization;

namespace DiTServer.Core.Sampling;

/// <summary>A run's latents turned NaN or infinite at a step: thrown by <see cref="SamplingRun.Advance"/>, so that only
/// that request fails (its batch mates' rows are independent) and no NaN ever reaches a decoder or a PNG. The message
/// names the step and the sampler settings, which are what the client can change.</summary>
public sealed class NonFiniteSampleException(SamplingOptions options, int step, int totalSteps)
    : Exception($"sampling produced NaN or infinity at step {step} of {totalSteps} with {Describe(options)}; " +
        "these settings are numerically unstable for this model: try another sampler, another number of steps, " +
        "a lower eta or a lower cfg_scale")
{
    public SamplingOptions Options { get; } = options;

    /// <summary>The step (1-based) whose update gave non-finite values.</summary>
    public int Step { get; } = step;

    /// <summary>The settings that decide the sampler's arithmetic, as the API names them: "sampler ddim, steps 2, eta 1, …".</summary>
    public static string Describe(SamplingOptions o)
    {
        var inv = CultureInfo.InvariantCulture;
        var parts = new List<string> { $"sampler {o.Sampler.Name()}", $"steps {o.Steps.ToString(inv)}" };
        if (o.Sampler == SamplerKind.Ddim) parts.Add($"eta {o.Eta.ToString("R", inv)}");
        if (o.IsSolver)
        {
            parts.Add($"spacing {o.EffectiveSpacing.Name()}");
            parts.Add($"order {o.EffectiveOrder.ToString(inv)}");
            if (o.Sampler == SamplerKind.UniPc) parts.Add($"unipc_variant {o.EffectiveUniPcVariant.Name()}");
            if (o.Thresholding) parts.Add("thresholding true");
        }
        parts.Add($"cfg_scale {o.CfgScale.ToString("R", inv)}");
        parts.Add($"guidance {o.Guidance.ToString().ToLowerInvariant()}");
        if (o.GuidanceInterval is { } interval) parts.Add($"guidance_interval {interval}");
        parts.Add($"seed {o.Seed.ToString(inv)}");
        return string.Join(", ", parts);
    }
}
