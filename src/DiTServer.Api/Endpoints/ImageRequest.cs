using System.ComponentModel;
using System.Text.Json.Serialization;

namespace DiTServer.Api.Endpoints;

/// <summary>The body of <c>POST /v1/images</c> as documented in Swagger; <see cref="ImageRequestParser"/> reads it field by field.</summary>
public record ImageRequest
{
    /// <summary>The OpenAPI example, which Swagger's "Try it out" sends unchanged.</summary>
    public const string Example = """{"class_label": 3, "num_images": 2, "steps": 50, "cfg_scale": 4.0, "seed": 42, "sampler": "ddpm", "guidance": "official"}""";

    [JsonPropertyName("class_label"), Description("Class index (0..num_classes-1) or class name; required")]
    public required object ClassLabel { get; init; }
    [JsonPropertyName("num_images"), Description("1..Serving:MaxImagesPerRequest; default 1")]
    public int? NumImages { get; init; }
    [JsonPropertyName("steps"), Description("Sampling steps 1..1000, respaced from 1000; default 50")]
    public int? Steps { get; init; }
    [JsonPropertyName("cfg_scale"), Description("Classifier-free guidance scale 1..20 (1 = none); default 4.0")]
    public double? CfgScale { get; init; }
    [JsonPropertyName("seed"), Description("int64 ≥ 0; random when absent, always reported")]
    public long? Seed { get; init; }
    [JsonPropertyName("sampler"), Description("ddpm | ddim; default ddpm")]
    public string? Sampler { get; init; }
    [JsonPropertyName("guidance"), Description("official (first 3 channels, as the DiT code) | all; default official")]
    public string? Guidance { get; init; }
    [JsonPropertyName("eta"), Description("DDIM only: 0 (deterministic, default) .. 1")]
    public double? Eta { get; init; }
}

/// <summary>The body of <c>POST /v1/jobs</c> as documented in OpenAPI: the images body plus <c>preview_every</c>;
/// <see cref="Jobs.JobRequestParser"/> reads it.</summary>
public sealed record JobRequest : ImageRequest
{
    public new const string Example = """{"class_label": 3, "num_images": 2, "steps": 50, "cfg_scale": 4.0, "seed": 42, "preview_every": 10}""";

    [JsonPropertyName("preview_every"), Description("0 or absent: no previews; k in 1..steps: a preview event with small PNGs after every k-th step but the last")]
    public int? PreviewEvery { get; init; }
}
