using System.Text.Json.Serialization;

namespace DiTServer.Api.Endpoints;

/// <summary>OpenAI's image API answer: <c>{"created": unix seconds, "data": [{"b64_json": ...} | {"url": ...}]}</c>.</summary>
public sealed record OpenAIImagesResponse(
    long Created,
    IReadOnlyList<OpenAIImage> Data);

/// <summary>One image: <c>b64_json</c> (a PNG) or <c>url</c> (its job result), and the class it shows as <c>revised_prompt</c>.</summary>
public sealed record OpenAIImage(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? B64Json,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Url,
    string RevisedPrompt);
