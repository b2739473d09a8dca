using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;

namespace DiTServer.Core.Pipeline;

/// <summary>A model folder's own sampling defaults (model.json's <c>"defaults"</c>, which a distilled student's export
/// writes) as sampling options: what a request that names no sampler gets on that model.</summary>
public static class ServedDefaults
{
    /// <returns>The options, or null when the manifest names none (the server's defaults apply).</returns>
    /// <exception cref="InvalidDataException">An unknown name or a rule of the sampler broken; the message names the field.</exception>
    public static SamplingOptions? Of(ModelManifest manifest)
    {
        if (manifest.Defaults is not { } d) return null;
        InvalidDataException Bad(string field, string why) => new($"{manifest.ManifestPath}: 'defaults.{field}' {why}");
        if (!SamplerNames.Samplers.TryGetValue(d.Sampler, out var sampler))
            throw Bad("sampler", $"is '{d.Sampler}'; use {SamplerNames.Alternatives(SamplerNames.Samplers.Keys)}");
        var spacing = d.Spacing is null ? (Sampling.Solvers.StepSpacing?)null
            : SamplerNames.Spacings.TryGetValue(d.Spacing, out var s) ? s
            : throw Bad("spacing", $"is '{d.Spacing}'; use {SamplerNames.Alternatives(SamplerNames.Spacings.Keys)}");
        var options = new SamplingOptions { Sampler = sampler, Steps = d.Steps, Order = d.Order, Spacing = spacing, CfgScale = d.CfgScale ?? 4.0 };
        try { options.Validate(); }
        catch (ArgumentException e) { throw Bad(e.ParamName ?? "sampler", e.Message.Split(" (Parameter")[0]); }
        return options;
    }
}
