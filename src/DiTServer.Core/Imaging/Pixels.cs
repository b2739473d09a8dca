using static TorchSharp.torch;

namespace DiTServer.Core.Imaging;

/// <summary>Model-space images in [-1, 1] to 8-bit pixels, as torchvision's <c>save_image(normalize=True, value_range=(-1, 1))</c>.</summary>
public static class Pixels
{
    /// <summary>(N, C, H, W) float → (N, C, H, W) uint8 on the CPU: floor(clamp((x+1)/2, 0, 1)·255 + 0.5).</summary>
    public static Tensor ToUInt8(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = images.detach().to(CPU).to_type(float32);
        x = ((x.clamp(-1, 1) + 1) / 2).mul(255).add(0.5).clamp(0, 255).to_type(ScalarType.Byte); // truncation = round half up
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>One image's pixels in HWC order (what PNG rows hold), from a (C, H, W) uint8 tensor.</summary>
    public static byte[] ToHwcBytes(Tensor chw)
    {
        using var scope = NewDisposeScope();
        return chw.permute(1, 2, 0).contiguous().data<byte>().ToArray();
    }
}
