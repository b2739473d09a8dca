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

    /// <summary>The run's settings as the API names them: "steps 2, sampler ddim, cfg_scale 4, guidance official, eta 1, seed 7".</summary>
    public static string Describe(SamplingOptions o) => string.Join(", ", o.Settings().Select(p => $"{p.Key} {p.Value}"));
}
