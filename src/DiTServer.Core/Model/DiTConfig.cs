namespace DiTServer.Core.Model;

/// <summary>How the timestep and class condition enter each block (DiT paper, Section 3.2).</summary>
public enum Conditioning
{
    /// <summary>Adaptive LayerNorm with zero-initialised gates: what the released checkpoints use.</summary>
    AdaLNZero,
    /// <summary>Adaptive LayerNorm (scale and shift regressed from t + y), no gates, not zero-initialised.</summary>
    AdaLN,
    /// <summary>Each block adds a cross-attention layer over the two tokens [t, y] after self-attention.</summary>
    CrossAttention,
    /// <summary>t and y are appended to the image tokens as two extra tokens and dropped before the final layer.</summary>
    InContext,
}

/// <summary>The names model.json and the CLI use for <see cref="Conditioning"/>.</summary>
public static class ConditioningNames
{
    private static readonly Dictionary<string, Conditioning> ByName = new(StringComparer.OrdinalIgnoreCase)
    {
        ["adaLN-Zero"] = Conditioning.AdaLNZero,
        ["adaLN"] = Conditioning.AdaLN,
        ["cross-attention"] = Conditioning.CrossAttention,
        ["in-context"] = Conditioning.InContext,
    };

    public static IReadOnlyCollection<string> All => ByName.Keys;

    public static string ToName(Conditioning c) => ByName.First(kv => kv.Value == c).Key;

    public static Conditioning Parse(string name) =>
        ByName.TryGetValue(name, out var c) ? c
        : throw new ArgumentException($"unknown conditioning '{name}'; use one of {string.Join(", ", ByName.Keys)}");
}

/// <summary>Architecture of one DiT: the official constructor arguments of <c>models.py</c>.</summary>
public sealed record DiTConfig
{
    public int InputSize { get; init; } = 32;
    public int PatchSize { get; init; } = 2;
    public int InChannels { get; init; } = 4;
    public int HiddenSize { get; init; } = 1152;
    public int Depth { get; init; } = 28;
    public int NumHeads { get; init; } = 16;
    public double MlpRatio { get; init; } = 4.0;
    public double ClassDropoutProb { get; init; } = 0.1;
    public int NumClasses { get; init; } = 1000;
    public bool LearnSigma { get; init; } = true;
    public Conditioning Conditioning { get; init; } = Conditioning.AdaLNZero;
    /// <summary>The guidance scale w is an input (a w_embedder added to c, Meng et al. 2023, "On Distillation of Guided
    /// Diffusion Models", Section 3.1): one forward gives the guided output, with no unconditional row. Distilled students.</summary>
    public bool GuidanceConditioned { get; init; }

    /// <summary>Channels the network predicts: ε, plus the variance interpolation v when sigma is learned.</summary>
    public int OutChannels => LearnSigma ? InChannels * 2 : InChannels;

    /// <summary>Tokens per image, T = (input_size / patch_size)².</summary>
    public int NumPatches => (InputSize / PatchSize) * (InputSize / PatchSize);

    /// <summary>Row of the label table used for "no class" (classifier-free guidance); equals <see cref="NumClasses"/>.</summary>
    public int NullClass => NumClasses;

    /// <summary>Throws with the field's name when the sizes cannot form a DiT.</summary>
    public void Validate()
    {
        Require(InputSize > 0, "input_size must be positive");
        Require(PatchSize > 0 && InputSize % PatchSize == 0, $"input_size {InputSize} must be divisible by patch_size {PatchSize}");
        Require(InChannels > 0, "in_channels must be positive");
        Require(Depth > 0, "depth must be positive");
        Require(NumHeads > 0 && HiddenSize > 0 && HiddenSize % NumHeads == 0, $"hidden_size {HiddenSize} must be a positive multiple of num_heads {NumHeads}");
        Require(HiddenSize % 4 == 0, $"hidden_size {HiddenSize} must be divisible by 4 (2-D sin-cos position embedding)");
        Require(MlpRatio > 0, "mlp_ratio must be positive");
        Require(NumClasses > 0, "num_classes must be positive");
        Require(ClassDropoutProb >= 0 && ClassDropoutProb < 1, "class_dropout_prob must be in [0, 1)");
    }

    private static void Require(bool ok, string message)
    {
        if (!ok) throw new ArgumentException(message);
    }

    /// <summary>The 12 official sizes (Table 1 of the paper; <c>DiT_models</c> in models.py).</summary>
    public static IReadOnlyDictionary<string, DiTConfig> Presets { get; } = BuildPresets();

    /// <summary>The preset named <paramref name="name"/> (e.g. "DiT-XL/2"), case-insensitive.</summary>
    public static DiTConfig FromPreset(string name) =>
        Presets.TryGetValue(name, out var c) ? c
        : throw new ArgumentException($"unknown DiT architecture '{name}'; known: {string.Join(", ", Presets.Keys)}");

    private static Dictionary<string, DiTConfig> BuildPresets()
    {
        var sizes = new (string Name, int Depth, int Hidden, int Heads)[]
        {
            ("XL", 28, 1152, 16), ("L", 24, 1024, 16), ("B", 12, 768, 12), ("S", 12, 384, 6),
        };
        var presets = new Dictionary<string, DiTConfig>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, depth, hidden, heads) in sizes)
            foreach (var patch in new[] { 2, 4, 8 })
                presets[$"DiT-{name}/{patch}"] = new DiTConfig { Depth = depth, HiddenSize = hidden, NumHeads = heads, PatchSize = patch };
        return presets;
    }
}
