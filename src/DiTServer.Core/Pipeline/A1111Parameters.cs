using DiTServer.Core.Sampling;
using DiTServer.Core.Vae;
using System.Globalization;

namespace DiTServer.Core.Pipeline;

/// <summary>The <c>parameters</c> PNG text chunk in AUTOMATIC1111's infotext format, which its "PNG Info" tab,
/// ComfyUI, InvokeAI and image browsers already read: the prompt on the first line (here the class name), then
/// <c>Key: value</c> pairs.</summary>
/// <remarks>Our own tEXt keys (model, class, seed, …) stay the machine-readable record; this is the same facts in the
/// spelling those tools know. "Batch size" and "Batch pos" are A1111's own keys for an image's place in its batch,
/// which with one generator per request is what reproduces it.</remarks>
public static class A1111Parameters
{
    public const string Keyword = "parameters";

    /// <param name="edit">Image to image: A1111's own "Denoising strength" key, and "Mask" (how much it redrew).</param>
    public static string Format(LoadedModel model, IReadOnlyList<int> labels, int index, SamplingOptions o, int width, int height,
        ImageEdit? edit = null)
    {
        var inv = CultureInfo.InvariantCulture;
        var pairs = new List<string>
        {
            $"Steps: {o.Steps.ToString(inv)}",
            $"Sampler: {SamplerName(o.Sampler)}",
            $"CFG scale: {o.CfgScale.ToString("R", inv)}",
            $"Seed: {o.Seed.ToString(inv)}",
            $"Size: {width.ToString(inv)}x{height.ToString(inv)}",
            $"Model: {Clean(model.Name)}",
            $"Class: {labels[index].ToString(inv)}",
            $"Guidance: {o.Guidance.ToString().ToLowerInvariant()}",
        };
        if (o.Sampler == SamplerKind.Ddim) pairs.Add($"Eta: {o.Eta.ToString("R", inv)}");
        if (o.IsSolver)
        {
            // A1111 has no keys for these; its parser keeps unknown pairs, so they travel with the image.
            pairs.Add($"Spacing: {o.EffectiveSpacing.Name()}");
            pairs.Add($"Order: {o.EffectiveOrder.ToString(inv)}");
            if (o.Sampler == SamplerKind.UniPc) pairs.Add($"UniPC variant: {o.EffectiveUniPcVariant.Name()}");
            if (o.Thresholding) pairs.Add("Thresholding: true");
        }
        if (o.GuidanceInterval is { } interval)
            pairs.Add($"Guidance interval: {interval.Lo.ToString("R", inv)}-{interval.Hi.ToString("R", inv)}");
        if (o.IsCached)
        {
            pairs.Add($"Cache interval: {o.CacheInterval.ToString(inv)}");
            pairs.Add($"Cache mode: {o.CacheMode.Name()}");
        }
        if (edit is not null)
        {
            pairs.Add($"Denoising strength: {edit.Strength.ToString("R", inv)}");
            if (edit.MaskSummary() is { } mask) pairs.Add($"Mask: {mask}");
        }
        if (labels.Count > 1)
        {
            pairs.Add($"Batch size: {labels.Count.ToString(inv)}");
            pairs.Add($"Batch pos: {index.ToString(inv)}");
        }
        pairs.Add("Version: DiTServer");
        return $"{Clean(model.Classes[labels[index]])}\n{string.Join(", ", pairs)}";
    }

    /// <summary>The names A1111/ComfyUI users know ("DPM++ 2M", "UniPC"); DPM++ 3M has only an SDE form there, so
    /// ours keeps the plain name.</summary>
    private static string SamplerName(SamplerKind s) => s switch
    {
        SamplerKind.Ddpm => "DDPM",
        SamplerKind.Ddim => "DDIM",
        SamplerKind.DpmPP2M => "DPM++ 2M",
        SamplerKind.DpmPP3M => "DPM++ 3M",
        SamplerKind.UniPc => "UniPC",
        _ => s.Name(),
    };

    /// <summary>Infotext splits on ", " and ": " and lines; keep free text from breaking the pairs.</summary>
    private static string Clean(string text) => text.Replace('\n', ' ').Replace(", ", " ").Replace(": ", " ");
}
