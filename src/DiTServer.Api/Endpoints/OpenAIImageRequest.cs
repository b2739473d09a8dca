using System.ComponentModel;
using System.Text.Json.Serialization;

namespace DiTServer.Api.Endpoints;

/// <summary>The body of <c>POST /v1/images/generations</c> as documented in OpenAPI; <see cref="OpenAIImageRequestParser"/>
/// reads it field by field so that every mistake is named in OpenAI's error object.</summary>
public sealed record OpenAIImageRequest
{
    [JsonPropertyName("prompt"), Description("A class name or index (see GET /v1/classes); required")]
    public required string Prompt { get; init; }
    [JsonPropertyName("n"), Description("Number of images, 1..Serving:MaxImagesPerRequest; default 1")]
    public int? N { get; init; }
    [JsonPropertyName("size"), Description("Must be the model's resolution, e.g. \"256x256\" (GET /v1/models: image_size)")]
    public string? Size { get; init; }
    [JsonPropertyName("response_format"), Description("b64_json (default) or url (a /v1/jobs/{id}/result?index=i URL per image)")]
    public string? ResponseFormat { get; init; }
    [JsonPropertyName("model"), Description("Accepted and ignored: one model is served")]
    public string? Model { get; init; }
    [JsonPropertyName("output_format"), Description("png only")]
    public string? OutputFormat { get; init; }
    [JsonPropertyName("background"), Description("auto or opaque; transparent is refused")]
    public string? Background { get; init; }
    [JsonPropertyName("quality"), Description("Accepted and ignored")]
    public string? Quality { get; init; }
    [JsonPropertyName("style"), Description("Accepted and ignored")]
    public string? Style { get; init; }
    [JsonPropertyName("moderation"), Description("Accepted and ignored (a class label needs no moderation)")]
    public string? Moderation { get; init; }
    [JsonPropertyName("user"), Description("Accepted and ignored")]
    public string? User { get; init; }
    [JsonPropertyName("seed"), Description("Extra: int64 ≥ 0; random when absent")]
    public long? Seed { get; init; }
    [JsonPropertyName("steps"), Description("Extra: sampling steps 1..1000; default 50")]
    public int? Steps { get; init; }
    [JsonPropertyName("cfg_scale"), Description("Extra: classifier-free guidance scale; default 4.0")]
    public double? CfgScale { get; init; }
    [JsonPropertyName("sampler"), Description("Extra: a sampler of GET /v1/models; default ddpm")]
    public string? Sampler { get; init; }
}
