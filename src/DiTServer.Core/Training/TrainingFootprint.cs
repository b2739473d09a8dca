using DiTServer.Core.Model;

namespace DiTServer.Core.Training;

/// <summary>Parameter count and a memory estimate of training a DiT, computed from its sizes alone, so that a request
/// for a model too large to train is refused before a single tensor is allocated.</summary>
/// <remarks>A 1,048,576-wide model was accepted by the admin API and left +1.1 GB of RSS behind when its allocation
/// failed. The estimate is float32: weights, gradients, EMA and AdamW's two moments (5 copies), plus activations kept
/// for the backward pass (about 16 values per token and hidden unit per block, and each head's T×T attention map).</remarks>
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

    /// <summary>Estimated bytes to train with <paramref name="batchSize"/> images per step.</summary>
    public static double TrainingBytes(DiTConfig c, int batchSize)
    {
        double t = c.NumPatches, d = c.HiddenSize;
        double activations = (double)batchSize * c.Depth * (16 * t * d + (double)c.NumHeads * t * t);
        return 4 * (5 * Parameters(c) + activations);
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
