using System.ComponentModel;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace DiTServer.Api.Endpoints;

/// <summary>The body of <c>POST /v1/images/generations</c> (OpenAI's image API): System.Text.Json reads it
/// (<see cref="JsonContract{T}"/>), <see cref="OpenAIImageRequestParser"/> checks it, and Swagger documents it.</summary>
/// <remarks>Four kinds of field: OpenAI's that we honour (<c>prompt</c> = class name or index, <c>n</c>, <c>size</c>,
/// <c>response_format</c>); our extras, the options of <c>POST /v1/images</c>; OpenAI's that its clients send and that
/// change nothing here, accepted with any value and ignored (<see cref="IgnoredJson"/>); and gpt-image-1's with one value
/// we honour (PNG, opaque), any other value refused by name rather than silently giving the client something it did not
/// ask for. The list of fields in an error message follows this order.</remarks>
public sealed record OpenAIImageRequest
{
    [Description("A class name or index (see GET /v1/classes); required")]
    [JsonConverter(typeof(ClassLabelJson))]
    public required string? Prompt { get; init; }
    [Description("Number of images, 1..Serving:MaxImagesPerRequest; default 1")]
    public int? N { get; init; }
    [Description("Must be the model's resolution, e.g. \"256x256\" (GET /v1/models: image_size)")]
    public string? Size { get; init; }
    [Description("b64_json (default) or url (a /v1/jobs/{id}/result?index=i URL per image)")]
    public string? ResponseFormat { get; init; }

    [Description("Extra: int64 ≥ 0; random when absent")]
    public long? Seed { get; init; }
    [Description("Extra: sampling steps 1..1000; default per sampler (GET /v1/models: samplers[].default_steps)")]
    public int? Steps { get; init; }
    [Description("Extra: classifier-free guidance scale; default 4.0")]
    public double? CfgScale { get; init; }
    [Description("Extra: a sampler of GET /v1/models; default: GET /v1/models default_sampler")]
    public string? Sampler { get; init; }
    [Description("Extra: as in POST /v1/images")]
    public string? Guidance { get; init; }
    [Description("Extra: as in POST /v1/images")]
    public double? Eta { get; init; }
    [Description("Extra: as in POST /v1/images")]
    public string? Spacing { get; init; }
    [Description("Extra: as in POST /v1/images")]
    public int? Order { get; init; }
    // "unipc", as the sampler is named, where the naming policy would split "UniPc" into uni_pc
    [JsonPropertyName("unipc_variant"), Description("Extra: as in POST /v1/images")]
    public string? UniPcVariant { get; init; }
    [Description("Extra: as in POST /v1/images")]
    public double[]? GuidanceInterval { get; init; }
    [Description("Extra: as in POST /v1/images")]
    public bool? Thresholding { get; init; }
    [Description("Extra: as in POST /v1/images")]
    public int? CacheInterval { get; init; }
    [Description("Extra: as in POST /v1/images")]
    public string? CacheMode { get; init; }

    [Description("Accepted and ignored: one model is served"), JsonConverter(typeof(IgnoredJson))]
    public string? Model { get; init; }
    [Description("Accepted and ignored"), JsonConverter(typeof(IgnoredJson))]
    public string? User { get; init; }
    [Description("Accepted and ignored"), JsonConverter(typeof(IgnoredJson))]
    public string? Quality { get; init; }
    [Description("Accepted and ignored"), JsonConverter(typeof(IgnoredJson))]
    public string? Style { get; init; }
    [Description("Accepted and ignored (a class label needs no moderation)"), JsonConverter(typeof(IgnoredJson))]
    public string? Moderation { get; init; }

    [Description("png only")]
    public string? OutputFormat { get; init; }
    [Description("auto or opaque; transparent is refused")]
    public string? Background { get; init; }

    /// <summary>The <c>POST /v1/images</c> body this asks for, checked by its rules.</summary>
    public ImageRequest ToImageRequest() => new()
    {
        ClassLabel = Prompt, NumImages = N, Steps = Steps, CfgScale = CfgScale, Seed = Seed, Sampler = Sampler, Guidance = Guidance, Eta = Eta,
        Spacing = Spacing, Order = Order, UniPcVariant = UniPcVariant, GuidanceInterval = GuidanceInterval, Thresholding = Thresholding,
        CacheInterval = CacheInterval, CacheMode = CacheMode,
    };
}

/// <summary>A field accepted with any JSON value and ignored: the value is skipped, the property stays null.</summary>
public sealed class IgnoredJson : JsonConverter<string>
{
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        reader.Skip();
        return null;
    }

    public override bool HandleNull => true;

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);
}
