using DiTServer.Core.Sampling;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Pipeline;

/// <summary>Labels + options → PNG images, in one call: sample latents, decode, encode (the `sample` verb's path).</summary>
public static class ImagePipeline
{
    /// <param name="edit">Image to image (SDEdit, inpainting); null = from noise. Progress counts the steps it runs.</param>
    public static IReadOnlyList<GeneratedImage> Generate(LoadedModel model, IReadOnlyList<int> labels, SamplingOptions options,
        Action<int, int>? progress = null, ImageEdit? edit = null)
    {
        options = ForModel(model, options);
        ValidateFor(model, options);
        using var scope = NewDisposeScope();
        var start = edit is null ? null : EditEncoder.Encode(model, edit);
        var latents = LatentSampler.Sample(model.Model, labels.Select(l => (long)l).ToArray(), options, model.Device, progress, start);
        var pixels = LatentDecoder.DecodeToPixels(model, latents);
        return Encode(model, pixels, labels, options, edit);
    }

    /// <summary>The options with what the model decides for them: whether it takes the guidance scale as an input (one row per image).</summary>
    public static SamplingOptions ForModel(LoadedModel model, SamplingOptions options) =>
        options with { GuidanceInModel = model.Config.GuidanceConditioned };

    /// <summary>The rules that depend on the model, not only on the options.</summary>
    /// <exception cref="ArgumentException">The options do not suit this model; the parameter name is the option's wire name.</exception>
    public static void ValidateFor(LoadedModel model, SamplingOptions options)
    {
        options.Validate();
        // Dynamic thresholding assumes x₀ lives in [−1, 1] pixels; latents have another range (the authors say so too).
        if (options.Thresholding && model.Vae is not null)
            throw new ArgumentException($"thresholding is for pixel-space models; {model.Name} is a latent model (it has a VAE)", "thresholding");
        if (options.CfgScale != 1 && model.Config.ClassDropoutProb <= 0)
            throw new ArgumentException($"{model.Name} has no null class (trained without label dropout), so cfg_scale must be 1", "cfg_scale");
    }

    /// <summary>PNG-encodes (N, C, H, W) uint8 pixels with the metadata that reproduces them; an edit's kept pixels
    /// are pasted back first (<see cref="ImageEdit.Composite"/>).</summary>
    public static IReadOnlyList<GeneratedImage> Encode(LoadedModel model, Tensor pixels, IReadOnlyList<int> labels, SamplingOptions options,
        ImageEdit? edit = null)
    {
        int c = (int)pixels.shape[1], h = (int)pixels.shape[2], w = (int)pixels.shape[3];
        var result = new List<GeneratedImage>(labels.Count);
        for (int i = 0; i < labels.Count; i++)
        {
            using var chw = pixels[i];
            var hwc = Pixels.ToHwcBytes(chw);
            result.Add(EncodeImage(model, edit?.Composite(hwc) ?? hwc, w, h, c, labels, i, options, edit));
        }
        return result;
    }

    /// <summary>One image of a batch, HWC bytes → PNG with the metadata that reproduces it (the server's path and this one).</summary>
    public static GeneratedImage EncodeImage(LoadedModel model, byte[] hwc, int width, int height, int channels,
        IReadOnlyList<int> labels, int index, SamplingOptions options, ImageEdit? edit = null)
    {
        var png = PngWriter.Encode(hwc, width, height, channels, Metadata(model, labels, index, options, edit));
        return new GeneratedImage(index, options.Seed, labels[index], model.Classes[labels[index]], hwc, width, height, channels, png);
    }

    /// <summary>PNG text chunks: enough to reproduce the image (model, class, steps, sampler, cfg, guidance, seed, batch position).</summary>
    /// <param name="edit">An image-to-image run's edit: its strength and mask are named (the image itself is the input).</param>
    public static IEnumerable<KeyValuePair<string, string>> Metadata(LoadedModel model, IReadOnlyList<int> labels, int index, SamplingOptions o,
        ImageEdit? edit = null)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        yield return new("Software", "DiTServer");
        yield return new("model", model.Name);
        yield return new("architecture", model.Manifest.ArchitectureName);
        yield return new("class", labels[index].ToString(inv));
        yield return new("class_name", model.Classes[labels[index]]);
        foreach (var setting in o.Settings()) yield return setting;
        if (edit is not null)
        {
            yield return new("strength", edit.Strength.ToString("R", inv));
            if (edit.MaskSummary() is { } mask) yield return new("mask", mask);
        }
        // tf32/bf16 change the low bits, so the seed alone no longer reproduces such an image under fp32.
        if (model.Precision != Model.Precision.Float32) yield return new("precision", model.Precision.ToOptionValue());
        // One generator per request draws all rows, so an image is reproduced by its seed and its place in the batch.
        yield return new("batch_labels", string.Join(",", labels));
        yield return new("batch_index", index.ToString(inv));
        int size = model.ImageSize;
        yield return new(A1111Parameters.Keyword, A1111Parameters.Format(model, labels, index, o, size, size, edit));
    }
}
