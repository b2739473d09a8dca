using System.Text.Json;

namespace DiTServer.Core.Vae;

/// <summary>The architecture of a diffusers <c>AutoencoderKL</c>, read from its folder's <c>config.json</c>.</summary>
/// <remarks>Only the plain SD-VAE family is accepted (DownEncoderBlock2D / UpDecoderBlock2D, SiLU, quant convs,
/// mid-block attention): anything else would load but compute something different, so it is rejected by name.</remarks>
public sealed record VaeConfig
{
    public const string DownBlockType = "DownEncoderBlock2D";
    public const string UpBlockType = "UpDecoderBlock2D";

    public int InChannels { get; init; } = 3;
    public int OutChannels { get; init; } = 3;
    public IReadOnlyList<int> BlockOutChannels { get; init; } = [64];
    public int LayersPerBlock { get; init; } = 1;
    public int LatentChannels { get; init; } = 4;
    public int NormNumGroups { get; init; } = 32;
    public double ScalingFactor { get; init; } = 0.18215;

    /// <summary>The stabilityai/sd-vae-ft-ema and sd-vae-ft-mse layout (8× downsampling, 4 latent channels).</summary>
    public static VaeConfig StableDiffusion { get; } = new()
    {
        InChannels = 3,
        OutChannels = 3,
        BlockOutChannels = [128, 256, 512, 512],
        LayersPerBlock = 2,
        LatentChannels = 4,
        NormNumGroups = 32,
        ScalingFactor = 0.18215,
    };

    /// <summary>Image side / latent side: 2 per downsampling level (all levels but the last downsample).</summary>
    public int DownsamplingFactor => 1 << (BlockOutChannels.Count - 1);

    /// <summary>Reads <c>config.json</c> from a diffusers model folder.</summary>
    public static VaeConfig FromFolder(string folder) => FromFile(Path.Combine(folder, "config.json"));

    /// <summary>Reads a diffusers <c>AutoencoderKL</c> config file.</summary>
    public static VaeConfig FromFile(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"VAE config '{path}' not found (a diffusers AutoencoderKL folder needs config.json)", path);
        string text = File.ReadAllText(path);
        try
        {
            return Parse(text);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"VAE config '{path}' is not valid JSON: {e.Message}", e);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"VAE config '{path}': {e.Message}", e);
        }
    }

    /// <summary>Parses the JSON text of a diffusers <c>AutoencoderKL</c> config; unknown fields are ignored.</summary>
    public static VaeConfig Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException("the top level must be a JSON object");

        var blockOut = IntArray(root, "block_out_channels") ?? [64];
        if (blockOut.Count == 0) throw new InvalidDataException("'block_out_channels' must not be empty");
        var config = new VaeConfig
        {
            InChannels = Int(root, "in_channels") ?? 3,
            OutChannels = Int(root, "out_channels") ?? 3,
            BlockOutChannels = blockOut,
            LayersPerBlock = Int(root, "layers_per_block") ?? 1,
            LatentChannels = Int(root, "latent_channels") ?? 4,
            NormNumGroups = Int(root, "norm_num_groups") ?? 32,
            ScalingFactor = Double(root, "scaling_factor") ?? 0.18215,
        };

        string act = String(root, "act_fn") ?? "silu";
        if (act != "silu") throw new InvalidDataException($"'act_fn' is \"{act}\"; only \"silu\" is supported");
        CheckBlockTypes(root, "down_block_types", DownBlockType, blockOut.Count);
        CheckBlockTypes(root, "up_block_types", UpBlockType, blockOut.Count);
        // Variants (SD3/Flux VAEs, attention-free mid blocks) that would need a different module graph.
        RequireTrueOrAbsent(root, "use_quant_conv");
        RequireTrueOrAbsent(root, "use_post_quant_conv");
        RequireTrueOrAbsent(root, "mid_block_add_attention");
        config.Validate();
        return config;
    }

    /// <summary>Checks that GroupNorm can split every channel count into <see cref="NormNumGroups"/> groups.</summary>
    public void Validate()
    {
        if (InChannels <= 0 || OutChannels <= 0 || LatentChannels <= 0 || LayersPerBlock <= 0 || NormNumGroups <= 0)
            throw new InvalidDataException("in_channels, out_channels, latent_channels, layers_per_block and norm_num_groups must be positive");
        foreach (int c in BlockOutChannels)
            if (c <= 0 || c % NormNumGroups != 0)
                throw new InvalidDataException($"'block_out_channels' entry {c} is not a positive multiple of norm_num_groups {NormNumGroups}");
    }

    /// <summary>Value equality over every field, <see cref="BlockOutChannels"/> element-wise (a record alone would compare the list by reference).</summary>
    public bool Equals(VaeConfig? other) =>
        other is not null
        && InChannels == other.InChannels && OutChannels == other.OutChannels
        && BlockOutChannels.SequenceEqual(other.BlockOutChannels)
        && LayersPerBlock == other.LayersPerBlock && LatentChannels == other.LatentChannels
        && NormNumGroups == other.NormNumGroups && ScalingFactor.Equals(other.ScalingFactor);

    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(InChannels);
        hash.Add(OutChannels);
        foreach (int c in BlockOutChannels) hash.Add(c);
        hash.Add(LayersPerBlock);
        hash.Add(LatentChannels);
        hash.Add(NormNumGroups);
        hash.Add(ScalingFactor);
        return hash.ToHashCode();
    }

    private static void CheckBlockTypes(JsonElement root, string field, string expected, int count)
    {
        if (!root.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return;
        if (el.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"'{field}' must be an array of strings");
        var types = el.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : e.ToString()).ToList();
        if (types.Count != count)
            throw new InvalidDataException($"'{field}' has {types.Count} entries but block_out_channels has {count}");
        foreach (var t in types)
            if (t != expected) throw new InvalidDataException($"'{field}' contains \"{t}\"; only \"{expected}\" is supported");
    }

    private static void RequireTrueOrAbsent(JsonElement root, string field)
    {
        if (root.TryGetProperty(field, out var el) && el.ValueKind == JsonValueKind.False)
            throw new InvalidDataException($"'{field}' is false; only the SD-VAE layout ({field} = true) is supported");
    }

    private static int? Int(JsonElement root, string field)
    {
        if (!root.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
        if (el.ValueKind == JsonValueKind.Number && el.TryGetInt32(out int v)) return v;
        throw new InvalidDataException($"'{field}' must be an integer, got {el.GetRawText()}");
    }

    private static double? Double(JsonElement root, string field)
    {
        if (!root.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
        if (el.ValueKind == JsonValueKind.Number) return el.GetDouble();
        throw new InvalidDataException($"'{field}' must be a number, got {el.GetRawText()}");
    }

    private static string? String(JsonElement root, string field)
    {
        if (!root.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
        if (el.ValueKind == JsonValueKind.String) return el.GetString();
        throw new InvalidDataException($"'{field}' must be a string, got {el.GetRawText()}");
    }

    private static List<int>? IntArray(JsonElement root, string field)
    {
        if (!root.TryGetProperty(field, out var el) || el.ValueKind == JsonValueKind.Null) return null;
        if (el.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"'{field}' must be an array of integers");
        var list = new List<int>();
        foreach (var e in el.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int v))
                throw new InvalidDataException($"'{field}' must be an array of integers, got {el.GetRawText()}");
            list.Add(v);
        }
        return list;
    }
}
