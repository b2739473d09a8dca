using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The official <c>forward_with_cfg</c>, for parity tests only: serving guides through
/// <see cref="Sampling.Denoiser"/>, which skips the unconditional rows of unguided requests.</summary>
public static class OfficialCfg
{
    /// <summary>x holds [z, z] (its second half is ignored), y holds [labels, null]; guidance uncond + s·(cond − uncond)
    /// is applied to <paramref name="mode"/>'s channels and copied to both halves.</summary>
    public static Tensor ForwardWithCfg(this DiT model, Tensor x, Tensor t, Tensor y, double cfgScale, GuidanceMode mode = GuidanceMode.Official)
    {
        int half = (int)(x.shape[0] / 2);
        var z = x[..half];
        var output = model.forward(cat(new[] { z, z }, 0), t, y);  // (2n, C_out, H, W)
        Tensor cond = output[..half], uncond = output[half..];      // (n, C_out, H, W) each
        int g = Guidance.GuidedChannels(mode, model.Config);
        var guidedCond = Guidance.Apply(cond, uncond, cfgScale, g);
        var guidedUncond = g == uncond.shape[1] ? guidedCond : cat(new[] { guidedCond[.., ..g], uncond[.., g..] }, 1);
        return cat(new[] { guidedCond, guidedUncond }, 0);
    }
}
