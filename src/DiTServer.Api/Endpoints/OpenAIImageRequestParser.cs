using FluentValidation;

namespace DiTServer.Api.Endpoints;

/// <summary>Reads the body of <c>POST /v1/images/generations</c> (OpenAI's image API) as an <see cref="OpenAIImageRequest"/>:
/// its own fields are checked here, the rest by the rules of <c>POST /v1/images</c> (<see cref="ImageRequestValidator"/>),
/// with the field names of their messages in OpenAI's words (class_label → prompt, num_images → n).</summary>
public static class OpenAIImageRequestParser
{
    public const string B64Json = "b64_json", Url = "url";
    private static readonly BodyWording Wording = new("the body is empty; send a JSON object such as {\"prompt\": \"sneaker\"}",
        _ => "the body must be a JSON object such as {\"prompt\": \"sneaker\", \"n\": 1}");
    private static readonly Dictionary<string, string> Renamed = new() { ["class_label"] = "prompt", ["num_images"] = "n" };

    /// <summary>Whether <paramref name="name"/> is a field of this body (as opposed to an unknown one).</summary>
    public static bool IsField(string name) => JsonContract<OpenAIImageRequest>.IsField(name);

    public sealed record Request(GenerationParameters Parameters, string ResponseFormat);

    public static Request? Parse(ReadOnlyMemory<byte> body, ImageRequestParser.Limits limits, int imageSize, out Dictionary<string, string[]> errors)
    {
        errors = new Dictionary<string, string[]>();
        // Checked first on this route (the native routes tell malformed JSON first): an ignored field is skipped unread.
        if (!System.Text.Unicode.Utf8.IsValid(body.Span))
        {
            errors["body"] = [JsonContract.NotUtf8];
            return null;
        }
        if (JsonContract<OpenAIImageRequest>.Read(body, Wording, errors, out var fields) is not { } request) return null;
        OpenAIImageRequestValidator.For(imageSize).Validate(request, fields).AddTo(errors);
        var images = request.ToImageRequest();
        var inner = new Dictionary<string, string[]>();
        ImageRequestValidator.For(limits).Validate(images, fields.Forwarded(Renamed)).AddTo(inner, field => Renamed.GetValueOrDefault(field, field));
        foreach (var (field, messages) in inner)
        {
            if (field == "prompt" && errors.ContainsKey("prompt")) continue; // already explained
            errors.AddError(field, messages.Select(Rename));
        }
        if (errors.Count > 0) return null;
        var format = request.ResponseFormat?.Trim().ToLowerInvariant() ?? B64Json;
        return new Request(ImageRequestParser.ToParameters(images, limits), format);
    }

    private static string Rename(string message) => message.Replace("class_label", "prompt").Replace("num_images", "n");
}

/// <summary>The rules of OpenAI's own fields of <see cref="OpenAIImageRequest"/>; the extras are the images body's.</summary>
public sealed class OpenAIImageRequestValidator : BodyValidator<OpenAIImageRequest>
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, OpenAIImageRequestValidator> Built = new();

    /// <summary>The validator for a model's image size, built once.</summary>
    public static OpenAIImageRequestValidator For(int imageSize) => Shared(Built, imageSize, size => new OpenAIImageRequestValidator(size));

    public OpenAIImageRequestValidator(int imageSize)
    {
        // A prompt number that is no class index is the images rules' to explain ("prompt must be an integer class index").
        RuleFor(x => x.Prompt)
            .Must((_, _, c) => !Fields(c).Unreadable("prompt") || Fields(c).Value("prompt").ValueKind == System.Text.Json.JsonValueKind.Number)
            .WithExactMessage((_, _, c) => "prompt must be a string: a class name or index (see GET /v1/classes), not " +
                JsonText.Describe(Fields(c).Value("prompt").ValueKind))
            .Must((_, prompt, c) => prompt is not null || Fields(c).Unreadable("prompt"))
            .WithExactMessage((_, _) => "prompt is required: a class name or index (see GET /v1/classes)")
            .OverridePropertyName("prompt");
        var expected = $"{imageSize}x{imageSize}";
        OneOf(x => x.Size, "size", v => string.Equals(v.Trim(), expected, StringComparison.OrdinalIgnoreCase),
            raw => $"size must be \"{expected}\", the model's resolution, not {raw}");
        OneOf(x => x.ResponseFormat, "response_format", v => v.Trim().ToLowerInvariant() is B64Json or Url,
            raw => $"response_format must be \"{B64Json}\" or \"{Url}\", not {raw}");
        Constrained(x => x.OutputFormat, "output_format", "png");
        Constrained(x => x.Background, "background", "auto", "opaque");
    }

    private const string B64Json = OpenAIImageRequestParser.B64Json, Url = OpenAIImageRequestParser.Url;

    /// <summary>A text field with a fixed set of values; any other value, or a value that is no string, is refused with
    /// <paramref name="message"/> (given the value as sent).</summary>
    private void OneOf(System.Linq.Expressions.Expression<Func<OpenAIImageRequest, string?>> property, string name, Func<string, bool> allowed,
        Func<string, string> message) =>
        Field(property, v => message(v.GetRawText()))
            .Must(v => v is null || allowed(v)).WithExactMessage((_, _, c) => message(Fields(c).Raw(name)));

    /// <summary>A gpt-image-1 field with the values we honour.</summary>
    private void Constrained(System.Linq.Expressions.Expression<Func<OpenAIImageRequest, string?>> property, string name, params string[] values) =>
        OneOf(property, name, v => values.Contains(v.Trim().ToLowerInvariant()),
            raw => $"{name} must be {string.Join(" or ", values.Select(a => $"\"{a}\""))} (this server writes opaque PNGs), not {raw}");
}
