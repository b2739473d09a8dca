using System.ComponentModel;

namespace DiTServer.Api.Endpoints;

/// <summary>The fields that both multipart routes, <c>/v1/images/edits</c> and <c>/v1/images/variations</c>, take: the
/// picture, and the text fields of <c>/v1/images/generations</c>; for the OpenAPI document (<see cref="OpenAIImageForm"/>
/// reads them). Swagger lists a base record's fields first, so the picture heads both forms.</summary>
public abstract record OpenAIImageUploadForm
{
    [Description("The picture: a PNG file, square; another size than the model's is resized to it")]
    public required IFormFile Image { get; init; }
    [Description("Number of images, 1..Serving:MaxImagesPerRequest; default 1")]
    public int? N { get; init; }
    [Description("Must be the model's resolution, e.g. \"256x256\" (GET /v1/models: image_size)")]
    public string? Size { get; init; }
    [Description("b64_json (default) or url")]
    public string? ResponseFormat { get; init; }
    [Description("Accepted and ignored")]
    public string? User { get; init; }
    [Description("Extra: int64 ≥ 0; random when absent")]
    public long? Seed { get; init; }
}
