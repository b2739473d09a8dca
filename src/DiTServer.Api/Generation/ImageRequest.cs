using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace DiTServer.Api.Generation;

/// <summary>The body of <c>POST /v1/images</c>: System.Text.Json reads it (<see cref="JsonContract{T}"/>),
/// <see cref="ImageRequestValidator"/> checks it, and Swagger documents it.</summary>
public record ImageRequest
{
    /// <summary>The OpenAPI example, which Swagger's "Try it out" sends unchanged.</summary>
    public const string Example = """{"class_label": 3, "num_images": 2, "steps": 50, "cfg_scale": 4.0, "seed": """ +
        """42, "sampler": "ddpm", "guidance": "official"}""";

    /// <summary>One example per kind of sampler, for Swagger UI's example menu.</summary>
    public static readonly IReadOnlyList<(string Name, string Summary, string Json)> SamplerExamples =
    [
        ("ddpm", "DDPM, 50 steps (the official sampler)", Example),
        ("dpmpp_2m", "DPM-Solver++ 2M, 10 steps, logSNR spacing",
            """{"class_label": 3, "num_images": 2, "steps": 10, "cfg_scale": 4.0, "seed": 42, "sampler": "dpmpp_2m", "spacing": "logsnr"}"""),
        ("unipc", "UniPC order 3, bh1, 8 steps, guided only for model timesteps 0..700",
            """{"class_label": 3, "steps": 8, "cfg_scale": 4.0, "seed": 42, "sampler": "unipc", "order": """ +
            """3, "unipc_variant": "bh1", "guidance_interval": [0, 700]}"""),
    ];

    [Description("Class index (0..num_classes-1) or class name; required")]
    [JsonConverter(typeof(ClassLabelJson))]
    public required string? ClassLabel { get; init; }
    [Description("1..Serving:MaxImagesPerRequest; default 1")]
    public int? NumImages { get; init; }
    [Description("Sampling steps (model calls) 1..1000; default per sampler (GET /v1/models: samplers[].default_steps)")]
    public int? Steps { get; init; }
    [Description("Classifier-free guidance scale 1..20 (1 = none); default 4.0")]
    public double? CfgScale { get; init; }
    [Description("int64 ≥ 0; random when absent, always reported")]
    public long? Seed { get; init; }
    [Description("ddpm | ddim | dpmpp_2m | dpmpp_3m | unipc; default: GET /v1/models default_sampler")]
    public string? Sampler { get; init; }
    [Description("official (first 3 channels, as the DiT code) | all; default official")]
    public string? Guidance { get; init; }
    [Description("DDIM only: 0 (deterministic, default) .. 1")]
    public double? Eta { get; init; }
    [Description("ODE solvers (dpmpp_2m, dpmpp_3m, unipc) only: time_uniform (default) | logsnr | time_quadratic, case-insensitive")]
    public string? Spacing { get; init; }
    [Description("unipc only: 1..3, default 2 (dpmpp_2m/dpmpp_3m take theirs from the name)")]
    public int? Order { get; init; }
    // "unipc", as the sampler is named, where the naming policy would split "UniPc" into uni_pc
    [JsonPropertyName("unipc_variant"), Description("unipc only: bh1 | bh2 (default)")]
    public string? UniPcVariant { get; init; }
    [Description("[lo, hi] in model timesteps 0..1000: guidance only while lo ≤ t ≤ hi, one unguided row outside; default always guided")]
    public double[]? GuidanceInterval { get; init; }
    [Description("ODE solvers on pixel-space models only: dynamic thresholding of x0 (ratio 0.995, max 1); default false")]
    public bool? Thresholding { get; init; }
    [Description("Feature caching: the transformer blocks run on every k-th step (and the first); the steps between skip them and " +
        "feed the final layer a cached block output. 1..1000; 1 = off. 3 is about 1.5x faster on DDPM/DDIM-50")]
    public int? CacheInterval { get; init; }
    [Description("With cache_interval > 1: reuse (the last full step's block output, FORA; the default unless the model's " +
        "default_cache names one) | taylor (first-order " +
        "extrapolation from the last two full steps, TaylorSeer)")]
    public string? CacheMode { get; init; }
    [Description("Image to image: a base64 PNG of the model's image size (GET /v1/models: image_size) to start from instead of " +
        "noise (SDEdit). Grayscale or RGB; converted to the model's channels")]
    public string? InitImage { get; init; }
    [Description("With init_image: 0 < strength ≤ 1, the share of the schedule run again (ceil(strength·steps) steps are run " +
        "and billed); low keeps the image, 1 redraws it almost from noise. Default 0.75")]
    public double? Strength { get; init; }
    [Description("With init_image: a base64 PNG of the same size; white (luminance ≥ 128) is redrawn, black is kept exactly " +
        "(inpainting). Default: the whole image is redrawn")]
    public string? Mask { get; init; }
}

/// <summary>The body of <c>POST /v1/jobs</c>: the images body plus <c>preview_every</c>, checked by
/// Jobs/JobRequestValidator.</summary>
public sealed record JobRequest : ImageRequest
{
    public new const string Example = """{"class_label": 3, "num_images": 2, "steps": 50, "cfg_scale": 4.0, "seed": 42, "preview_every": 10}""";

    /// <remarks>Ordered after the images fields (System.Text.Json puts a derived record's own properties first), so the
    /// list of fields in an error message reads as the images body plus this.</remarks>
    [JsonPropertyOrder(1),
        Description("0 or absent: no previews; k in 1..steps: a preview event with small PNGs after every k-th step but the last")]
    public int? PreviewEvery { get; init; }
}

/// <summary>A class label as sent: a class name, or an integer class index (read as its decimal text, which
/// <see cref="DiTServer.Core.Model.ClassNames.TryResolve"/> takes as an index); any other value is not a class label.</summary>
public sealed class ClassLabelJson : JsonConverter<string>
{
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.String => reader.GetString(),
        JsonTokenType.Number when reader.TryGetInt32(out var index) => index.ToString(CultureInfo.InvariantCulture),
        _ => throw new JsonException("a class label is a class name or an integer class index"),
    };

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);
}
