using static TorchSharp.torch;

namespace DiTServer.Core.Model;

/// <summary>Which output channels classifier-free guidance mixes.</summary>
public enum GuidanceMode
{
    /// <summary>The first 3 output channels, as the official <c>forward_with_cfg</c> ("for exact reproducibility");
    /// it reproduces the published numbers. For models with fewer than 3 output channels: all of them.</summary>
    Official,
    /// <summary>Every ε channel (the first in_channels), as diffusers' DiTPipeline does.</summary>
    All,
}

/// <summary>Classifier-free guidance (Ho &amp; Salimans 2022): ε = ε_uncond + s·(ε_cond − ε_uncond).</summary>
public static class Guidance
{
    public static int GuidedChannels(GuidanceMode mode, DiTConfig config) =>
        mode == GuidanceMode.Official ? Math.Min(3, config.OutChannels) : config.InChannels;

    /// <summary>The conditional rows' output with its first <paramref name="guidedChannels"/> channels guided;
    /// the other channels stay conditional. cond, uncond: (n, C_out, H, W); scale: scalar or (n, 1, 1, 1).</summary>
    public static Tensor Apply(Tensor cond, Tensor uncond, Tensor scale, int guidedChannels)
    {
        var guided = uncond[.., ..guidedChannels] + scale * (cond[.., ..guidedChannels] - uncond[.., ..guidedChannels]);
        return guidedChannels == cond.shape[1] ? guided : cat(new[] { guided, cond[.., guidedChannels..] }, 1);
    }

    public static Tensor Apply(Tensor cond, Tensor uncond, double scale, int guidedChannels)
    {
        using var s = tensor((float)scale, device: cond.device);
        return Apply(cond, uncond, s, guidedChannels);
    }
}
