using DiTServer.Core.Model;

namespace DiTServer.Core.Training;

/// <summary>Parameter count and a memory estimate of training a DiT, computed from its sizes alone, so that a request
/// for a model too large to train is refused before a single tensor is allocated.</summary>
/// <remarks>A 1,048,576-wide model was accepted by the admin API and left +1.1 GB of RSS behind when its allocation
/// failed. The estimate is float32: weights, gradients, EMA and AdamW's two moments (5 copies), plus what one step keeps
/// for the backward pass per batch row, fitted to the RSS growth of real steps on CPU (libtorch 2.10, one thread; see
/// <c>TrainingMemoryTests</c>, which holds it within 1.5× of a child process's measured peak):
/// <list type="bullet">
/// <item>about 22 values per token and hidden unit in each DiT block (LayerNorm and modulation outputs, q/k/v, the
/// attention output, the 4×-wide MLP and its GELU, residuals). No T×T attention map: libtorch's CPU
/// scaled-dot-product attention is the flash kernel, which keeps only a log-sum-exp per row; 2 and 8 heads measured the
/// same;</item>
/// <item>about 13 per token and hidden unit outside the blocks (patch embedding, position sum, final layer);</item>
/// <item>about 80 per input value (C×S×S): the batch itself, noise, x_t, the model output with its learned variance,
/// and the many elementwise terms of the official loss (posterior mean and variance, KL, discretized likelihood).</item>
/// </list>
/// The old estimate (16 per token and unit, a T×T map per head, nothing outside the blocks) was about 5× too low for
/// small models, whose steps are dominated by the per-pixel terms of the loss. Attention maps are still counted where
/// a kernel must keep them (<see cref="AttentionMapBytes"/>: none on CPU). Plus <see cref="RuntimeBytes"/> once: what
/// the first step's kernels, autograd engine and allocator take whatever the batch.</remarks>
public static class TrainingFootprint
{
    /// <summary>Parameters of the model (adaLN-Zero exactly; the other conditioning variants within a few percent).</summary>
    public static double Parameters(DiTConfig c)
    {
        double d = c.HiddenSize, m = Math.Floor(c.HiddenSize * c.MlpRatio) / c.HiddenSize, p2 = (double)c.PatchSize * c.PatchSize;
        double block = (4 + 2 * m + 6) * d * d + (3 + 1 + m + 1 + 6) * d;             // attn qkv + proj, mlp, adaLN (6·D)
        double embed = c.InChannels * p2 * d + d                                       // patch embedding (conv)
                     + 256 * d + d + d * d + d                                         // timestep MLP
                     + (c.NumClasses + (c.ClassDropoutProb > 0 ? 1 : 0)) * d            // label table (+ null class)
                     + (double)c.NumPatches * d;                                       // fixed position embedding
        double final = 2 * d * d + 2 * d + d * p2 * c.OutChannels + p2 * c.OutChannels; // final adaLN + linear
        return c.Depth * block + embed + final;
    }

    /// <summary>Values kept per token and hidden unit in each DiT block for the backward pass.</summary>
    public const double BlockValuesPerTokenUnit = 22;
    /// <summary>Values kept per token and hidden unit outside the blocks (embedders, final layer).</summary>
    public const double OuterValuesPerTokenUnit = 13;
    /// <summary>Values kept per input value (C×S×S) by the batch, the noise and the diffusion loss's terms.</summary>
    public const double ValuesPerInputValue = 80;
    /// <summary>What the first step adds whatever the batch (kernels, autograd engine, allocator arenas).</summary>
    public const double RuntimeBytes = 32L << 20;
    /// <summary>Bytes of attention maps kept per head and token pair; 0 on CPU, whose attention kernel keeps none.</summary>
    public const double AttentionMapBytes = 0;

    /// <summary>Estimated bytes to train with <paramref name="batchSize"/> images per step: weights, gradients, EMA and AdamW
    /// moments, the activations one step keeps per row (see the remarks on this class), and the runtime's own.</summary>
    public static double TrainingBytes(DiTConfig c, int batchSize)
    {
        double t = c.NumPatches, d = c.HiddenSize, input = (double)c.InChannels * c.InputSize * c.InputSize;
        double perRow = 4 * (c.Depth * BlockValuesPerTokenUnit * t * d + OuterValuesPerTokenUnit * t * d + ValuesPerInputValue * input)
                      + c.Depth * AttentionMapBytes * c.NumHeads * t * t;
        return 4 * 5 * Parameters(c) + batchSize * perRow + RuntimeBytes;
    }

    /// <summary>Throws <see cref="ArgumentException"/> (the message names both numbers) when the model or its training
    /// would exceed the limits.</summary>
    public static void Check(DiTConfig c, int batchSize, double maxParameters, double maxBytes)
    {
        double parameters = Parameters(c), bytes = TrainingBytes(c, batchSize);
        if (parameters > maxParameters)
            throw new ArgumentException($"the model would have {parameters / 1e6:F1} M parameters; this server trains at most {maxParameters / 1e6:F1} M " +
                $"(Training:MaxParameters)");
        if (bytes > maxBytes)
            throw new ArgumentException($"training it with batch_size {batchSize} needs about {bytes / (1 << 30):F1} GiB; this server allows " +
                $"{maxBytes / (1 << 30):F1} GiB (Training:MaxMemoryBytes); lower batch_size or the model size");
    }
}
