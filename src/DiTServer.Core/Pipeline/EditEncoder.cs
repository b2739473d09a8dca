using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Pipeline;

/// <summary>An <see cref="ImageEdit"/> (plain bytes) → an <see cref="EditStart"/> (tensors in the DiT's space on the
/// model's device): the image as the DiT sees it, and its mask on the DiT's grid. The server's runner and the sample
/// verb both start edits here.</summary>
public static class EditEncoder
{
    /// <exception cref="ArgumentException">The edit is not of the model's image size or channels.</exception>
    public static EditStart Encode(LoadedModel model, ImageEdit edit)
    {
        if (edit.Size != model.ImageSize || edit.Channels != model.ImageChannels)
            throw new ArgumentException($"the init image must be {model.ImageSize}x{model.ImageSize} with {model.ImageChannels} channel(s) for " +
                $"{model.Name}, got {edit.Size}x{edit.Size} with {edit.Channels}", "init_image");
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        int size = edit.Size;
        var image = tensor(edit.ModelPixels(), new long[] { 1, edit.Channels, size, size }).to(model.Device);     // (1, C_img, H, W) in [−1, 1]
        // Latent models start from the VAE's posterior mean (deterministic: the run's own generator draws all noise),
        // scaled as the DiT was trained (sample.py divides by the same factor before decoding).
        var x0 = model.Vae is { } vae ? vae.Encode(image).Mean * vae.Config.ScalingFactor : image;              // (1, C, h, w)
        Tensor? redraw = null;
        if (edit.Mask is not null)
        {
            var weights = tensor(edit.RedrawWeights(), new long[] { 1, 1, size, size }).to(model.Device);          // (1, 1, H, W)
            // A latent cell is redrawn when any of its pixels is: the pixel-space composite at the end restores the
            // kept pixels exactly, while a cell half-kept in latent space would freeze the pixels meant to change.
            int f = model.Vae?.Config.DownsamplingFactor ?? 1;
            redraw = f == 1 ? weights : nn.functional.max_pool2d(weights, f, f);                                  // (1, 1, h, w)
            redraw = redraw.to(x0.dtype).DetachFromDisposeScope();
        }
        return new EditStart(edit, x0.to(float32).DetachFromDisposeScope(), redraw);
    }
}
