using System.Text.Json;
using System.Buffers;
using DiTServer.Core.Serving;

namespace DiTServer.Api.Endpoints;

/// <summary>Reads the body of <c>POST /v1/images/generations</c> (OpenAI's image API): <c>prompt</c> is a class name
/// or index, <c>n</c> the number of images, <c>size</c> must be the model's resolution, <c>response_format</c> is
/// <c>b64_json</c> or <c>url</c>; <c>seed</c>, <c>steps</c>, <c>cfg_scale</c>, <c>sampler</c> and the sampler options of <c>/v1/images</c> are our extras.
/// The rest is checked by <see cref="ImageRequestParser"/>, with its field names mapped back (class_label → prompt, num_images → n).</summary>
public static class OpenAIImageRequestParser
{
    public const string B64Json = "b64_json", Url = "url";
    /// <summary>OpenAI fields that its clients send and that change nothing here (one model is served; a class label
    /// needs no moderation; quality and style are hints); accepted and ignored.</summary>
    private static readonly string[] Ignored = ["model", "user", "quality", "style", "moderation"];
    private static readonly string[] Extras = ["seed", "steps", "cfg_scale", "sampler", "guidance", "eta",
        "spacing", "order", "unipc_variant", "guidance_interval", "thresholding"];
    /// <summary>gpt-image-1 fields with one value that we honour (PNG, opaque); any other value is refused by name
    /// rather than silently giving the client something it did not ask for.</summary>
    private static readonly Dictionary<string, string[]> Constrained = new()
    {
        ["output_format"] = ["png"],
        ["background"] = ["auto", "opaque"],
    };
    private static readonly string[] Known = ["prompt", "n", "size", "response_format", .. Extras, .. Ignored, .. Constrained.Keys];

    /// <summary>Whether <paramref name="name"/> is a field of this body (as opposed to an unknown one).</summary>
    public static bool IsField(string name) => Known.Contains(name);
    private static readonly Dictionary<string, string> Renamed = new() { ["class_label"] = "prompt", ["num_images"] = "n" };

    public sealed record Request(GenerationParameters Parameters, string ResponseFormat);

    public static Request? Parse(ReadOnlyMemory<byte> body, ImageRequestParser.Limits limits, int imageSize, out Dictionary<string, string[]> errors)
    {
        // Invalid UTF-8 or an escaped lone surrogate in a field name passes JsonDocument.Parse and then throws from
        // JsonProperty.Name (InvalidOperationException): a 500 before this check.
        if (!System.Text.Unicode.Utf8.IsValid(body.Span))
        {
            errors = new() { ["body"] = ["the body is not valid UTF-8; send JSON encoded as UTF-8"] };
            return null;
        }
        try { return ParseText(body, limits, imageSize, out errors); }
        catch (InvalidOperationException e)
        {
            errors = new() { ["body"] = [$"the body holds a string that is not valid Unicode text: {e.Message}"] };
            return null;
        }
    }

    private static Request? ParseText(ReadOnlyMemory<byte> body, ImageRequestParser.Limits limits, int imageSize, out Dictionary<string, string[]> errors)
    {
        errors = new Dictionary<string, string[]>();
        string responseFormat;
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 }); }
        catch (JsonException e)
        {
            errors["body"] = [body.Length == 0 ? "the body is empty; send a JSON object such as {\"prompt\": \"sneaker\"}" : $"malformed JSON: {e.Message}"];
            return null;
        }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            errors["body"] = ["the body must be a JSON object such as {\"prompt\": \"sneaker\", \"n\": 1}"];
            return null;
        }
        // The /v1/images body these fields translate to, checked by its own parser below.
        var buffer = new ArrayBufferWriter<byte>();
        using (var forwarded = new Utf8JsonWriter(buffer))
        {
            forwarded.WriteStartObject();
            string format = B64Json;
            var seen = new HashSet<string>();
            bool hasPrompt = false;
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                var (name, value) = (property.Name, property.Value);
                if (!Known.Contains(name)) { Add(errors, name, $"unknown field '{name}'; the fields are {string.Join(", ", Known)}"); continue; }
                if (!seen.Add(name)) { Add(errors, name, $"field '{name}' appears more than once"); continue; }
                if (value.ValueKind == JsonValueKind.Null) continue;
                switch (name)
                {
                    case "prompt":
                        hasPrompt = true;
                        if (value.ValueKind is not (JsonValueKind.String or JsonValueKind.Number))
                            Add(errors, "prompt", $"prompt must be a string: a class name or index (see GET /v1/classes), not {Kind(value)}");
                        else { forwarded.WritePropertyName("class_label"); value.WriteTo(forwarded); }
                        break;
                    case "n":
                        forwarded.WritePropertyName("num_images");
                        value.WriteTo(forwarded);
                        break;
                    case "size":
                        var expected = $"{imageSize}x{imageSize}";
                        if (value.ValueKind != JsonValueKind.String || !string.Equals(value.GetString()!.Trim(), expected, StringComparison.OrdinalIgnoreCase))
                            Add(errors, "size", $"size must be \"{expected}\", the model's resolution, not {value.GetRawText()}");
                        break;
                    case "response_format":
                        var f = value.ValueKind == JsonValueKind.String ? value.GetString()!.Trim().ToLowerInvariant() : null;
                        if (f is B64Json or Url) format = f;
                        else Add(errors, "response_format", $"response_format must be \"{B64Json}\" or \"{Url}\", not {value.GetRawText()}");
                        break;
                    case "output_format" or "background":
                        var allowed = Constrained[name];
                        var v = value.ValueKind == JsonValueKind.String ? value.GetString()!.Trim().ToLowerInvariant() : null;
                        if (v is null || !allowed.Contains(v))
                            Add(errors, name,
                                $"{name} must be {string.Join(" or ", allowed.Select(a => $"\"{a}\""))} (this server writes opaque PNGs), not " +
                                $"{value.GetRawText()}");
                        break;
                    default:
                        if (Extras.Contains(name)) { forwarded.WritePropertyName(name); value.WriteTo(forwarded); }
                        break;
                }
            }
            if (!hasPrompt) Add(errors, "prompt", "prompt is required: a class name or index (see GET /v1/classes)");
            forwarded.WriteEndObject();
            forwarded.Flush();
            responseFormat = format;
        }
        var parameters = ImageRequestParser.Parse(buffer.WrittenMemory, limits, out var inner);
        foreach (var (field, messages) in inner)
        {
            var name = Renamed.GetValueOrDefault(field, field);
            if (name == "prompt" && errors.ContainsKey("prompt")) continue; // already explained
            foreach (var m in messages) Add(errors, name, Rename(m));
        }
        return errors.Count == 0 && parameters is not null ? new Request(parameters, responseFormat) : null;
    }

    private static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => v.ValueKind.ToString().ToLowerInvariant(),
    };

    private static string Rename(string message) => message.Replace("class_label", "prompt").Replace("num_images", "n");

    private static void Add(Dictionary<string, string[]> errors, string field, string message) =>
        errors[field] = errors.TryGetValue(field, out var existing) ? [.. existing, message] : [message];
}
