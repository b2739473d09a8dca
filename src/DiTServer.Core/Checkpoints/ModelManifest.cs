using System.Text.Json;
using System.Text.Json.Nodes;
using DiTServer.Core.Model;

namespace DiTServer.Core.Checkpoints;

/// <summary>The <c>model.json</c> that describes a servable model folder (format: shared/fixtures/README.md).</summary>
public sealed record ModelManifest
{
    /// <summary>Absolute path of the manifest file; relative paths inside resolve against its folder.</summary>
    public required string ManifestPath { get; init; }
    /// <summary>Display name: "name" in the file, else the folder's name.</summary>
    public required string Name { get; init; }
    /// <summary>Preset name, or "custom" when sizes were given.</summary>
    public required string ArchitectureName { get; init; }
    public required DiTConfig Config { get; init; }
    /// <summary>Absolute path of the weights (.pt state dict, train.py checkpoint or .safetensors).</summary>
    public required string WeightsPath { get; init; }
    /// <summary>Absolute path of a diffusers AutoencoderKL folder; null for pixel-space models.</summary>
    public string? VaePath { get; init; }
    /// <summary>Class names file (absolute path) when given as a file.</summary>
    public string? ClassNamesPath { get; init; }
    /// <summary>Class names when given inline as an array.</summary>
    public IReadOnlyList<string>? ClassNamesInline { get; init; }
    /// <summary>Feature caching for long samplers when a request names none (<c>default_cache</c>); null = never by default.</summary>
    public Sampling.CacheDefault? DefaultCache { get; init; }
    /// <summary>The sampling requests get when they name none ("defaults"); null = the server's defaults.</summary>
    public ModelDefaults? Defaults { get; init; }
    /// <summary>The teacher's name when the model is a distilled student ("distilled_from.name").</summary>
    public string? DistilledFrom { get; init; }

    public string Folder => Path.GetDirectoryName(ManifestPath)!;

    /// <summary>Reads a manifest from a folder holding model.json or from the file itself.</summary>
    /// <exception cref="InvalidDataException">The file is missing, malformed, or names bad values; the message says which.</exception>
    public static ModelManifest Load(string folderOrFile)
    {
        string path = Directory.Exists(folderOrFile) ? Path.Combine(folderOrFile, "model.json") : folderOrFile;
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
            throw new InvalidDataException(Directory.Exists(folderOrFile)
                ? $"no model.json in {Path.GetFullPath(folderOrFile)}"
                : $"model not found: {path} is neither a folder with model.json nor a manifest file");
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path),
                documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }) as JsonObject
                   ?? throw new InvalidDataException($"{path}: the manifest must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: malformed JSON ({e.Message})");
        }
        return Parse(root, path);
    }

    private static ModelManifest Parse(JsonObject root, string path)
    {
        string folder = Path.GetDirectoryName(path)!;
        string Resolve(string p) => Path.GetFullPath(Path.IsPathRooted(p) ? p : Path.Combine(folder, p));
        InvalidDataException Bad(string field, string why) => new($"{path}: '{field}' {why}");

        var arch = root["architecture"]
            ?? throw Bad("architecture", "is required (a preset such as \"DiT-XL/2\" or {depth, hidden_size, num_heads, patch_size})");
        DiTConfig config;
        string archName;
        try
        {
            if (arch is JsonValue v && v.TryGetValue<string>(out var preset))
            {
                config = DiTConfig.FromPreset(preset);
                archName = DiTConfig.Presets.Keys.First(k => string.Equals(k, preset, StringComparison.OrdinalIgnoreCase));
            }
            else if (arch is JsonObject o)
            {
                config = new DiTConfig
                {
                    Depth = RequiredInt(o, "depth", path, "architecture."),
                    HiddenSize = RequiredInt(o, "hidden_size", path, "architecture."),
                    NumHeads = RequiredInt(o, "num_heads", path, "architecture."),
                    PatchSize = RequiredInt(o, "patch_size", path, "architecture."),
                    MlpRatio = OptionalDouble(o, "mlp_ratio", path, "architecture.") ?? 4.0,
                };
                archName = "custom";
            }
            else throw Bad("architecture", "must be a preset name or an object");
        }
        catch (ArgumentException e) { throw Bad("architecture", e.Message); }

        config = config with
        {
            InputSize = OptionalInt(root, "input_size", path) ?? config.InputSize,
            InChannels = OptionalInt(root, "in_channels", path) ?? config.InChannels,
            NumClasses = OptionalInt(root, "num_classes", path) ?? config.NumClasses,
            LearnSigma = OptionalBool(root, "learn_sigma", path) ?? config.LearnSigma,
            ClassDropoutProb = OptionalDouble(root, "class_dropout_prob", path) ?? config.ClassDropoutProb,
            GuidanceConditioned = OptionalBool(root, "guidance_conditioned", path) ?? false,
        };
        if (OptionalString(root, "conditioning", path) is { } conditioning)
        {
            try { config = config with { Conditioning = ConditioningNames.Parse(conditioning) }; }
            catch (ArgumentException e) { throw Bad("conditioning", e.Message); }
        }
        try { config.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{path}: {e.Message}"); }

        var weights = OptionalString(root, "weights", path) ?? throw Bad("weights", "is required (a .pt, train.py checkpoint or .safetensors file)");
        string weightsPath = Resolve(weights);
        if (!File.Exists(weightsPath)) throw Bad("weights", $"points to {weightsPath}, which does not exist");

        string? vaePath = null;
        if (!root.ContainsKey("vae")) throw Bad("vae", "is required: a diffusers AutoencoderKL folder, or null for a pixel-space model");
        if (root["vae"] is not null)
        {
            vaePath = Resolve(OptionalString(root, "vae", path)!);
            if (!Directory.Exists(vaePath)) throw Bad("vae", $"points to {vaePath}, which is not a folder");
        }

        string? classFile = null;
        List<string>? inline = null;
        switch (root["class_names"])
        {
            case null: break;
            case JsonArray arr:
                inline = arr.Select((n, i) => n is JsonValue jv && jv.TryGetValue<string>(out var s) ? s
                    : throw Bad($"class_names[{i}]", "must be a string")).ToList();
                break;
            case JsonValue jv when jv.TryGetValue<string>(out var f):
                classFile = Resolve(f);
                if (!File.Exists(classFile)) throw Bad("class_names", $"points to {classFile}, which does not exist");
                break;
            default: throw Bad("class_names", "must be a file name or an array of names");
        }

        Sampling.CacheDefault? defaultCache = null;
        switch (root["default_cache"])
        {
            case null: break;
            case JsonObject c:
                int interval = RequiredInt(c, "interval", path, "default_cache.");
                if (interval < 2 || interval > Sampling.SamplingOptions.MaxCacheInterval)
                    throw Bad("default_cache.interval", $"must be in 2..{Sampling.SamplingOptions.MaxCacheInterval} (leave default_cache out for no caching)");
                var mode = Sampling.CacheMode.Reuse;
                if (OptionalString(c, "mode", path) is { } m && !Sampling.SamplerNames.CacheModes.TryGetValue(m, out mode))
                    throw Bad("default_cache.mode", $"must be {Sampling.SamplerNames.Alternatives(Sampling.SamplerNames.CacheModes.Keys)}");
                int minSteps = RequiredInt(c, "min_steps", path, "default_cache.");
                if (minSteps < 1) throw Bad("default_cache.min_steps", "must be at least 1");
                defaultCache = new Sampling.CacheDefault(interval, mode, minSteps);
                break;
            default: throw Bad("default_cache", "must be an object such as {\"interval\": 3, \"mode\": \"reuse\", \"min_steps\": 50}");
        }
        string? teacher = root["distilled_from"] switch
        {
            null => null,
            JsonObject d when d["name"] is JsonValue n && n.TryGetValue<string>(out var t) => t,
            _ => throw Bad("distilled_from", "must be an object with the teacher's \"name\""),
        };
        var defaults = root["defaults"] is { } node ? ModelDefaults.Parse(node, path) : null;

        return new ModelManifest
        {
            Defaults = defaults,
            DistilledFrom = teacher,
            ManifestPath = path,
            Name = OptionalString(root, "name", path) ?? new DirectoryInfo(folder).Name,
            ArchitectureName = archName,
            Config = config,
            WeightsPath = weightsPath,
            VaePath = vaePath,
            ClassNamesPath = classFile,
            ClassNamesInline = inline,
            DefaultCache = defaultCache,
        };
    }

    private static int RequiredInt(JsonObject o, string field, string path, string prefix = "") =>
        OptionalInt(o, field, path, prefix) ?? throw new InvalidDataException($"{path}: '{prefix}{field}' is required");

    private static int? OptionalInt(JsonObject o, string field, string path, string prefix = "")
    {
        if (o[field] is not JsonNode n) return null;
        if (n is JsonValue v && v.TryGetValue<int>(out var i)) return i;
        if (n is JsonValue d && d.TryGetValue<double>(out var x) && x == Math.Floor(x) && Math.Abs(x) < int.MaxValue) return (int)x;
        throw new InvalidDataException($"{path}: '{prefix}{field}' must be an integer, got {n.ToJsonString()}");
    }

    private static double? OptionalDouble(JsonObject o, string field, string path, string prefix = "")
    {
        if (o[field] is not JsonNode n) return null;
        if (n is JsonValue v && v.TryGetValue<double>(out var x)) return x;
        throw new InvalidDataException($"{path}: '{prefix}{field}' must be a number, got {n.ToJsonString()}");
    }

    private static bool? OptionalBool(JsonObject o, string field, string path)
    {
        if (o[field] is not JsonNode n) return null;
        if (n is JsonValue v && v.TryGetValue<bool>(out var b)) return b;
        throw new InvalidDataException($"{path}: '{field}' must be true or false, got {n.ToJsonString()}");
    }

    private static string? OptionalString(JsonObject o, string field, string path)
    {
        if (o[field] is not JsonNode n) return null;
        if (n is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0) return s;
        throw new InvalidDataException($"{path}: '{field}' must be a non-empty string, got {n.ToJsonString()}");
    }
}
