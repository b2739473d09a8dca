using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Sampling;

/// <summary>Runs the DiT once over a set of rows, adding an unconditional copy only for rows that use guidance.</summary>
/// <remarks>The official code doubles the batch as [z, z] with labels [y, null] and guides via
/// <c>forward_with_cfg</c>; the result for the real rows is the same, and rows with cfg_scale 1 skip their
/// unconditional pass. Rows may carry different timesteps and scales, which is what step-level batching needs.</remarks>
public static class Denoiser
{
    /// <param name="x">(n, C, H, W) current latents.</param>
    /// <param name="t">(n) original timesteps (0..999) the model sees.</param>
    /// <param name="y">(n) class labels.</param>
    /// <param name="cfgScales">per row; 1 means no guidance.</param>
    /// <param name="network">The network over the forward's rows (x, t, y, w) → output; null = <c>model.forward</c>.
    /// <see cref="BatchForward"/> passes one that leaves cached rows out of the blocks. Its rows are the n given rows,
    /// then (when some are guided) one unconditional copy of each guided row, in order. w is null except for a
    /// guidance-conditioned model, which gets the n rows alone, each with its scale as w.</param>
    /// <returns>(n, C_out, H, W) model output with guidance applied to the guided channels.</returns>
    public static Tensor Forward(DiT model, Tensor x, Tensor t, Tensor y, IReadOnlyList<double> cfgScales, GuidanceMode mode,
        Func<Tensor, Tensor, Tensor, Tensor?, Tensor>? network = null)
    {
        network ??= model.forward;
        if (cfgScales.Count != x.shape[0]) throw new ArgumentException("one cfg scale per row");
        if (model.Config.GuidanceConditioned)
        {
            // Guidance folded into the model (a distilled student): one row per image, its scale an input; 1 = conditional.
            using var w = tensor(cfgScales.Select(s => (float)s).ToArray(), device: x.device); // (n)
            return network(x, t, y, w);                                                       // (n, C_out, H, W)
        }
        var guided = Enumerable.Range(0, cfgScales.Count).Where(i => cfgScales[i] != 1.0).ToArray();
        if (guided.Length == 0) return network(x, t, y, null);
        if (model.Config.ClassDropoutProb <= 0)
            throw new InvalidOperationException("this model has no null class (trained without label dropout), so it cannot use cfg_scale > 1");

        using var scope = NewDisposeScope();
        var idx = tensor(guided.Select(i => (long)i).ToArray(), device: x.device);
        var xIn = cat(new[] { x, x.index_select(0, idx) }, 0);                                           // (n + g, C, H, W)
        var tIn = cat(new[] { t, t.index_select(0, idx) }, 0);                                           // (n + g)
        var yIn = cat(new[] { y, full(guided.Length, (long)model.Config.NullClass, dtype: int64, device: y.device) }, 0);
        var output = network(xIn, tIn, yIn, null);                                                          // (n + g, C_out, H, W)
        var cond = output[..(int)x.shape[0]];
        var uncond = output[(int)x.shape[0]..];
        var scales = tensor(guided.Select(i => (float)cfgScales[i]).ToArray(), device: x.device).view(-1, 1, 1, 1);
        var mixed = Guidance.Apply(cond.index_select(0, idx), uncond, scales, Guidance.GuidedChannels(mode, model.Config));
        return cond.index_copy(0, idx, mixed).MoveToOuterDisposeScope();                               // (n, C_out, H, W)
    }
}
