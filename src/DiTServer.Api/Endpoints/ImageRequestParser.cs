using System.Text.Json;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using DiTServer.Core.Serving;

namespace DiTServer.Api.Endpoints;

/// <summary>Reads and validates the JSON body of <c>POST /v1/images</c> field by field, so every mistake gets a
/// precise message (the framework's binder would answer one generic failure, or a 500 for some type errors).</summary>
public static class ImageRequestParser
{
    public const int MaxSteps = 1000;
    public const double MaxCfgScale = 20;
    private static readonly string[] Known = ["class_label", "num_images", "steps", "cfg_scale", "seed", "sampler", "guidance", "eta",
        "spacing", "order", "unipc_variant", "guidance_interval", "thresholding"];
    private static readonly JsonDocumentOptions JsonOptions = new() { MaxDepth = 8 };

    /// <summary>The model facts validation needs.</summary>
    /// <param name="IsLatent">The model works on VAE latents (dynamic thresholding is refused there).</param>
    public sealed record Limits(ClassNames Classes, int NumClasses, bool HasNullClass, int MaxImagesPerRequest, bool IsLatent = false);

    /// <param name="otherFields">Fields an endpoint reads itself before forwarding the rest here (e.g. the jobs'
    /// <c>preview_every</c>); only named in the message about an unknown field.</param>
    /// <returns>The parameters, or null with <paramref name="errors"/> keyed by field ("body" for the whole body).</returns>
    public static GenerationParameters? Parse(ReadOnlyMemory<byte> body, Limits limits, out Dictionary<string, string[]> errors,
        IReadOnlyList<string>? otherFields = null)
    {
        errors = new Dictionary<string, string[]>();
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body, JsonOptions); }
        catch (JsonException e)
        {
            errors["body"] = [body.Length == 0 ? "the body is empty; send a JSON object such as {\"class_label\": 3}" : $"malformed JSON: {e.Message}"];
            return null;
        }
        if (!System.Text.Unicode.Utf8.IsValid(body.Span))
        {
            doc.Dispose();
            errors["body"] = ["the body is not valid UTF-8; send JSON encoded as UTF-8"];
            return null;
        }
        try
        {
            return ParseObject(doc, limits, errors, otherFields ?? []);
        }
        catch (InvalidOperationException e)
        {
            // GetString on an escaped lone surrogate ("\ud800"): valid JSON syntax, but not text.
            errors.Clear();
            errors["body"] = [$"the body holds a string that is not valid Unicode text: {e.Message}"];
            return null;
        }
        finally { doc.Dispose(); }
    }

    private static GenerationParameters? ParseObject(JsonDocument doc, Limits limits, Dictionary<string, string[]> errors, IReadOnlyList<string> otherFields)
    {
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            errors["body"] = [$"the body must be a JSON object, not {Describe(root.ValueKind)}"];
            return null;
        }
        var fields = new Dictionary<string, JsonElement>();
        foreach (var p in root.EnumerateObject())
        {
            if (!Known.Contains(p.Name))
                Add(errors, p.Name, $"unknown field '{p.Name}'; the fields are {string.Join(", ", [.. Known, .. otherFields])}");
            else if (!fields.TryAdd(p.Name, p.Value))
                Add(errors, p.Name, $"field '{p.Name}' appears more than once");
        }

        int label = ClassLabel(fields, limits, errors);
        int numImages = Integer(fields, "num_images", 1, 1, limits.MaxImagesPerRequest, errors);
        var sampler = Choice(fields, "sampler", SamplerDefaults.Sampler, SamplerNames.Samplers, errors);
        bool samplerOk = !errors.ContainsKey("sampler");
        int steps = Integer(fields, "steps", SamplerDefaults.Steps(sampler), 1, MaxSteps, errors);
        double cfg = Number(fields, "cfg_scale", 4.0, 1, MaxCfgScale, errors);
        long seed = Seed(fields, errors);
        var guidance = Choice(fields, "guidance", GuidanceMode.Official,
            new Dictionary<string, GuidanceMode> { ["official"] = GuidanceMode.Official, ["all"] = GuidanceMode.All }, errors);
        double eta = Number(fields, "eta", 0, 0, 1, errors);
        if (fields.ContainsKey("eta") && sampler != SamplerKind.Ddim && samplerOk)
            Add(errors, "eta", "eta applies to the ddim sampler only");
        if (cfg != 1 && !limits.HasNullClass && !errors.ContainsKey("cfg_scale"))
            Add(errors, "cfg_scale", "this model was trained without a null class, so cfg_scale must be 1");

        // The ODE solvers' options: each is refused where it means nothing, so a typo'd sampler cannot hide it.
        StepSpacing? spacing = Present(fields, "spacing") ? Choice(fields, "spacing", StepSpacing.TimeUniform, SamplerNames.Spacings, errors) : null;
        if (spacing is not null && !sampler.IsSolver() && samplerOk)
            Add(errors, "spacing", $"spacing applies to the ODE solvers only ({SamplerNames.SolverList}), not {sampler.Name()}");
        int? order = Present(fields, "order") ? Integer(fields, "order", 2, 1, 3, errors) : null;
        if (order is not null && sampler != SamplerKind.UniPc && samplerOk)
            Add(errors, "order", sampler.IsSolver()
                ? $"order is fixed by the sampler's name ({sampler.Name()} is order {new SamplingOptions { Sampler = sampler }.EffectiveOrder}); order (1, 2 " +
                    $"or 3) applies to unipc only"
                : "order (1, 2 or 3) applies to unipc only");
        UniPcVariant? variant = Present(fields, "unipc_variant") ? Choice(fields, "unipc_variant", UniPcVariant.Bh2, SamplerNames.Variants, errors) : null;
        if (variant is not null && sampler != SamplerKind.UniPc && samplerOk)
            Add(errors, "unipc_variant", "unipc_variant (bh1 or bh2) applies to the unipc sampler only");
        var interval = Interval(fields, errors);
        bool thresholding = Boolean(fields, "thresholding", errors);
        if (thresholding && samplerOk && !sampler.IsSolver())
            Add(errors, "thresholding", $"thresholding applies to the ODE solvers only ({SamplerNames.SolverList}), not {sampler.Name()}");
        else if (thresholding && limits.IsLatent)
            Add(errors, "thresholding", "thresholding is for pixel-space models; this model works on VAE latents, so use thresholding false");
        int effectiveOrder = sampler switch { SamplerKind.DpmPP2M => 2, SamplerKind.DpmPP3M => 3, SamplerKind.UniPc => order ?? 2, _ => 1 };
        if (sampler.IsSolver() && steps < effectiveOrder && !errors.ContainsKey("steps") && !errors.ContainsKey("order"))
            Add(errors, "steps", $"steps must be at least the solver's order ({effectiveOrder}) for {sampler.Name()}, got {steps}");
        if (errors.Count > 0) return null;

        var options = new SamplingOptions
        {
            Sampler = sampler, Steps = steps, CfgScale = cfg, Guidance = guidance, Eta = eta, Seed = seed,
            Spacing = spacing, Order = order, UniPcVariant = variant, GuidanceInterval = interval, Thresholding = thresholding,
        };
        options.Validate(); // the sampler's own rules; the checks above are stricter, so this never fires for parsed input
        return new GenerationParameters(label, numImages, options);
    }

    private static bool Present(Dictionary<string, JsonElement> fields, string name) =>
        fields.TryGetValue(name, out var v) && v.ValueKind != JsonValueKind.Null;

    private static bool Boolean(Dictionary<string, JsonElement> fields, string name, Dictionary<string, string[]> errors)
    {
        if (!fields.TryGetValue(name, out var v) || v.ValueKind == JsonValueKind.Null) return false;
        if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) return v.GetBoolean();
        Add(errors, name, $"{name} must be true or false, not {Show(v)}");
        return false;
    }

    /// <summary><c>guidance_interval</c>: [lo, hi] in model timesteps, 0 ≤ lo &lt; hi ≤ 1000; absent or null = always guided.</summary>
    private static GuidanceInterval? Interval(Dictionary<string, JsonElement> fields, Dictionary<string, string[]> errors)
    {
        const string name = "guidance_interval", rule = "guidance_interval must be [lo, hi]: two numbers with 0 ≤ lo < hi ≤ 1000 (model timesteps; " +
            "guidance is on for lo ≤ t ≤ hi)";
        if (!fields.TryGetValue(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != 2
            || v.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out var d) || !double.IsFinite(d)))
        {
            Add(errors, name, $"{rule}, not {(v.ValueKind == JsonValueKind.Array ? v.GetRawText() : Show(v))}");
            return null;
        }
        double lo = v[0].GetDouble(), hi = v[1].GetDouble();
        if (lo < 0 || hi > GuidanceInterval.Max || lo >= hi)
        {
            Add(errors, name, $"{rule}, got {v.GetRawText()}");
            return null;
        }
        return new GuidanceInterval(lo, hi);
    }

    private static int ClassLabel(Dictionary<string, JsonElement> fields, Limits limits, Dictionary<string, string[]> errors)
    {
        string range = $"0..{limits.NumClasses - 1}";
        if (!fields.TryGetValue("class_label", out var v) || v.ValueKind == JsonValueKind.Null)
        {
            Add(errors, "class_label", $"class_label is required: a class index {range} or a class name (see GET /v1/classes)");
            return -1;
        }
        string text;
        if (v.ValueKind == JsonValueKind.Number)
        {
            if (!v.TryGetInt32(out var index))
            {
                Add(errors, "class_label", $"class_label must be an integer class index {range} or a class name, not {v.GetRawText()}");
                return -1;
            }
            text = index.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        else if (v.ValueKind == JsonValueKind.String) text = v.GetString()!;
        else
        {
            Add(errors, "class_label", $"class_label must be an integer class index {range} or a class name, not {Describe(v.ValueKind)}");
            return -1;
        }
        if (text.Trim().Length == 0)
        {
            Add(errors, "class_label", $"class_label is empty; use a class index {range} or a class name (see GET /v1/classes)");
            return -1;
        }
        if (limits.Classes.TryResolve(text, limits.NumClasses, out var id, out var error)) return id;
        Add(errors, "class_label", error);
        return -1;
    }

    private static int Integer(Dictionary<string, JsonElement> fields, string name, int fallback, int min, int max, Dictionary<string, string[]> errors)
    {
        if (!fields.TryGetValue(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out var value))
        {
            Add(errors, name, $"{name} must be an integer in {min}..{max}, not {Show(v)}");
            return fallback;
        }
        if (value < min || value > max)
        {
            Add(errors, name, $"{name} must be in {min}..{max}, got {value}");
            return fallback;
        }
        return (int)value;
    }

    private static double Number(Dictionary<string, JsonElement> fields, string name, double fallback, double min, double max,
        Dictionary<string, string[]> errors)
    {
        if (!fields.TryGetValue(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var value) || !double.IsFinite(value))
        {
            Add(errors, name, $"{name} must be a number in {min}..{max}, not {Show(v)}");
            return fallback;
        }
        if (value < min || value > max)
        {
            Add(errors, name, $"{name} must be in {min}..{max}, got {v.GetRawText()}");
            return fallback;
        }
        return value;
    }

    /// <summary>Absent: a random seed below 2^53, so JavaScript clients can echo it back exactly.</summary>
    private static long Seed(Dictionary<string, JsonElement> fields, Dictionary<string, string[]> errors)
    {
        if (!fields.TryGetValue("seed", out var v) || v.ValueKind == JsonValueKind.Null) return Random.Shared.NextInt64(0, 1L << 53);
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out var seed))
        {
            Add(errors, "seed", $"seed must be an integer in 0..{long.MaxValue}, not {Show(v)}");
            return 0;
        }
        if (seed < 0) Add(errors, "seed", $"seed must be ≥ 0, got {seed}");
        return seed;
    }

    private static T Choice<T>(Dictionary<string, JsonElement> fields, string name, T fallback, IReadOnlyDictionary<string, T> choices,
        Dictionary<string, string[]> errors)
    {
        if (!fields.TryGetValue(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        string allowed = SamplerNames.Alternatives(choices.Keys);
        if (v.ValueKind != JsonValueKind.String)
        {
            Add(errors, name, $"{name} must be a string: {allowed}, not {Show(v)}");
            return fallback;
        }
        var s = v.GetString()!;
        if (choices.TryGetValue(s.Trim().ToLowerInvariant(), out var value)) return value;
        Add(errors, name, $"unknown {name} '{s}'; use {allowed}");
        return fallback;
    }

    private static void Add(Dictionary<string, string[]> errors, string field, string message) =>
        errors[field] = errors.TryGetValue(field, out var existing) ? [.. existing, message] : [message];

    private static string Show(JsonElement v) => v.ValueKind is JsonValueKind.Number or JsonValueKind.String ? v.GetRawText() : Describe(v.ValueKind);

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
