using DiTServer.Core.Sampling;
using DiTServer.Core.Imaging;
using DiTServer.Core.Checkpoints;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace DiTServer.Core.Pipeline;

/// <summary>A run's predicted x₀ → small 8-bit preview images, cheap enough for the worker thread between steps.</summary>
/// <remarks>A pixel-space model's x̂₀ is the image itself. A latent model's x̂₀ goes through
/// <see cref="LatentRgbProjection"/> (a 4×3 matrix product), not through the VAE decoder: a decode on the worker every
/// k steps would cost every request in the batch a large part of a step. The result is then resized to the preview
/// side (the image side, capped) and turned into pixels with the rule the final images use.</remarks>
public static class PreviewRenderer
{
    /// <summary>Why this model cannot make previews, or null when it can.</summary>
    public static string? Unsupported(LoadedModel model) =>
        model.Vae is not null && model.Config.InChannels != LatentRgbProjection.Channels
            ? $"this model's latents have {model.Config.InChannels} channels; previews need a pixel-space model or {LatentRgbProjection.Channels}-channel " +
                $"Stable-Diffusion latents"
            : null;

    /// <summary>Side of a square preview: the image's side, but at most <paramref name="maxSide"/> (DiT images are square).</summary>
    public static int Side(LoadedModel model, int maxSide) => Math.Clamp(model.ImageSize, 1, Math.Max(1, maxSide));

    /// <summary>Channels of a preview: the image's for a pixel-space model, RGB for a latent one.</summary>
    public static int Channels(LoadedModel model) => model.Vae is null ? model.Config.InChannels : 3;

    /// <param name="predXStart">(N, C, H, W) predicted x₀ in the model's space (latents or pixels).</param>
    /// <returns>(N, <see cref="Channels"/>, side, side) uint8 on the CPU.</returns>
    public static Tensor Render(LoadedModel model, Tensor predXStart, int maxSide)
    {
        if (Unsupported(model) is { } reason) throw new InvalidOperationException(reason);
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var images = model.Vae is null ? predXStart.to_type(float32) : LatentRgbProjection.Apply(predXStart); // (N, C', h, w) ≈ [-1, 1]
        // Clamped before resizing, so that an outlier (x̂₀ is far out of range early on) cannot bleed into its neighbours.
        images = Resize(images.clamp(-1, 1), Side(model, maxSide));                                              // (N, C', s, s)
        return Pixels.ToUInt8(images).MoveToOuterDisposeScope();
    }

    /// <summary>Area averaging to shrink (every source pixel counts, no aliasing), bilinear to enlarge (a latent is
    /// 8× smaller than its image); unchanged when the size already fits.</summary>
    private static Tensor Resize(Tensor images, int side)
    {
        long h = images.shape[2], w = images.shape[3];
        if (h == side && w == side) return images;
        var size = new long[] { side, side };
        return side <= h && side <= w
            ? F.interpolate(images, size, mode: InterpolationMode.Area)
            : F.interpolate(images, size, mode: InterpolationMode.Bilinear, align_corners: false);
    }
}
