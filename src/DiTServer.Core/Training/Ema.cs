using DiTServer.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>Exponential moving average of a DiT's parameters: the weights that get exported and served.</summary>
/// <remarks>As train.py's <c>update_ema</c>: ema = decay·ema + (1−decay)·param over named parameters, no buffers.</remarks>
public sealed class Ema : IDisposable
{
    /// <summary>The averaged model; never trained directly, kept in eval mode.</summary>
    public DiT Model { get; }

    /// <summary>Starts as an exact copy of <paramref name="source"/> (train.py: <c>update_ema(ema, model, decay=0)</c>).</summary>
    public Ema(DiT source)
    {
        Model = new DiT(source.Config);
        Model.to(source.parameters().First().device);
        using (no_grad())
            foreach (var (name, p) in Model.named_parameters())
            {
                p.requires_grad = false;
                p.copy_(source.get_parameter(name)!);
            }
        Model.eval();
    }

    /// <summary>The decay for update number <paramref name="updates"/> (0-based): fixed, or with the warm-up
    /// min(decay, (1+n)/(10+n)) (the schedule of TensorFlow's ExponentialMovingAverage with num_updates).</summary>
    public static double DecayAt(double decay, bool warmup, long updates) =>
        warmup ? Math.Min(decay, (1.0 + updates) / (10.0 + updates)) : decay;

    /// <summary>One EMA step towards <paramref name="source"/>'s current parameters.</summary>
    public void Update(DiT source, double decay)
    {
        using var _ = no_grad();
        foreach (var (name, p) in Model.named_parameters())
            p.mul_(decay).add_(source.get_parameter(name)!, alpha: 1 - decay);
    }

    public void Dispose() => Model.Dispose();
}
