using DiTServer.Core.Sampling;
using DiTServer.Core.Vae;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Imaging;
using static TorchSharp.torch;

namespace DiTServer.Core.Pipeline;

/// <summary>Final latents → uint8 pixels: VAE decode of latents / scaling_factor (sample.py), or the samples
/// themselves for pixel-space models, then the fixtures' pixel rule.</summary>
public static class LatentDecoder
{
    /// <returns>(N, C, H, W) uint8 on the CPU.</returns>
    public static Tensor DecodeToPixels(LoadedModel model, Tensor latents)
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var images = model.Vae is { } vae ? vae.Decode(latents / vae.Config.ScalingFactor) : latents;
        return Pixels.ToUInt8(images).MoveToOuterDisposeScope();
    }
}
