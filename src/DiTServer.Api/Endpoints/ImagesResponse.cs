using System.Text.Json.Serialization;

namespace DiTServer.Api.Endpoints;

/// <summary>The JSON answer of <c>POST /v1/images</c> (<c>Accept: application/json</c>): every image its own PNG.</summary>
public sealed record ImagesResponse(
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("images")] IReadOnlyList<ImageItem> Images);

public sealed record ImageItem(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("seed")] long Seed,
    [property: JsonPropertyName("class_label")] int ClassLabel,
    [property: JsonPropertyName("class_name")] string ClassName,
    [property: JsonPropertyName("png_base64")] string PngBase64);
