using static TorchSharp.torch;

namespace DiTServer.Core.Sampling.Solvers;

/// <summary><c>torch.linspace</c> in float32, computed by libtorch itself: its halfway-symmetric formula decides the
/// last bits of every solver time, so we ask it rather than re-derive it.</summary>
public static class Linspace
{
    public static float[] Float32(double start, double end, int count)
    {
        using var values = linspace(start, end, count, dtype: float32);
        return values.data<float>().ToArray();
    }
}
