using static TorchSharp.torch;

namespace DiTServer.Core.Imaging;

/// <summary>A fixed linear map from Stable-Diffusion VAE latents (4 channels) to approximate RGB in [-1, 1]: one
/// 4×3 matrix product per latent pixel instead of a VAE decode, for step previews.</summary>
/// <remarks>The factors are ComfyUI's <c>latent_rgb_factors</c> of its <c>SD15</c> latent format
/// (comfy/latent_formats.py), a least-squares fit of decoded colours to SD-1 VAE latents in the sampler's scaled space
/// (latent × 0.18215), which is the space DiT samples in with sd-vae-ft-ema/mse. ComfyUI's previewer applies them to
/// the predicted x₀ and maps the result from [-1, 1] to pixels, as the preview renderer (Pipeline/PreviewRenderer) does. With another
/// 4-channel VAE the colours are only roughly right; the shapes still show.</remarks>
public static class LatentRgbProjection
{
    /// <summary>Latent channels the factors are for.</summary>
    public const int Channels = 4;

    /// <summary>Rows: latent channels 0..3; columns: R, G, B.</summary>
    private static readonly float[,] Factors =
    {
        { 0.3512f, 0.2297f, 0.3227f },
        { 0.3250f, 0.4974f, 0.2350f },
        { -0.2829f, 0.1762f, 0.2721f },
        { -0.2120f, -0.2616f, -0.7177f },
    };

    /// <summary>(N, 4, h, w) latents → (N, 3, h, w) approximate RGB, same device and resolution.</summary>
    public static Tensor Apply(Tensor latents)
    {
        if (latents.dim() != 4 || latents.shape[1] != Channels)
            throw new ArgumentException($"the latent→RGB projection needs (N, {Channels}, h, w) latents, got ({string.Join(", ", latents.shape)})");
        using var scope = NewDisposeScope();
        var factors = tensor(Factors, dtype: float32, device: latents.device);                    // (4, 3)
        var rgb = latents.to_type(float32).permute(0, 2, 3, 1).matmul(factors);                    // (N, h, w, 3)
        return rgb.permute(0, 3, 1, 2).contiguous().MoveToOuterDisposeScope();                     // (N, 3, h, w)
    }
}
