using System.Globalization;
using System.Text.Json;
using DiTServer.Core.Imaging;
using DiTServer.Core.Sampling;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;

namespace DiTServer.Api.Endpoints;

/// <summary>Reads the multipart body of <c>POST /v1/images/edits</c> and <c>/v1/images/variations</c>, as OpenAI's SDKs
/// send it: the PNG files (<c>image</c>, and <c>mask</c> for edits), <c>strength</c>, and the text fields, which are
/// checked by the rules of <c>/v1/images/generations</c> (<see cref="OpenAIImageRequestParser"/>) as the JSON body they
/// stand for, so both routes and the generation route refuse the same values in the same words.</summary>
public static class OpenAIImageForm
{
    /// <summary>Largest PNG file taken: OpenAI's own limit for these routes (4 MB).</summary>
    public const int MaxFileBytes = 4 * 1024 * 1024;

    /// <summary>Largest body: two files and the text fields.</summary>
    public const int MaxBodyBytes = 2 * MaxFileBytes + 64 * 1024;

    /// <summary>Default strength of a variation, and of an edit without a mask (a class transfer): the native default.</summary>
    public const double DefaultStrength = ImageEdit.DefaultStrength;

    /// <summary>Default strength of an edit with a mask: the masked region is drawn anew, as OpenAI's edits do.</summary>
    public const double DefaultMaskedStrength = 1.0;

    /// <summary>A valid upload: what to generate (with its <see cref="GenerationParameters.Edit"/>) and how to answer.
    /// A variation's class is still to be guessed (<see cref="ClassGuess"/>).</summary>
    public sealed record Upload(GenerationParameters Parameters, string ResponseFormat);

    public sealed record Parsed(Upload? Upload, ValidationProblem? Invalid, ProblemHttpResult? Unsupported);

    private const string Image = "image", Mask = "mask", Strength = "strength", Prompt = "prompt";

    /// <param name="variation">True for <c>/v1/images/variations</c>: no prompt and no mask.</param>
    public static async Task<Parsed> ReadAsync(HttpRequest request, LoadedModel model, ServingOptions o, bool variation)
    {
        if (!request.HasFormContentType || request.ContentType?.StartsWith("multipart/form-data", StringComparison.OrdinalIgnoreCase) != true)
            return new(null, null, TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type",
                detail: $"send the body as multipart/form-data with the image as a PNG file part, not {request.ContentType ?? "no content type"}"));
        // Read whole first, bounded in size and time like every body here (RequestBody), then parsed from memory.
        var body = await RequestBody.ReadAsync(request, MaxBodyBytes);
        request.Body = new MemoryStream(body.ToArray(), writable: false);
        request.HttpContext.Features.Set<IFormFeature>(new FormFeature(request, new FormOptions
        {
            MultipartBodyLengthLimit = MaxBodyBytes, ValueCountLimit = 64, ValueLengthLimit = 64 * 1024, KeyLengthLimit = 256,
        }));
        var errors = new Dictionary<string, string[]>();
        IFormCollection form;
        try { form = await request.ReadFormAsync(request.HttpContext.RequestAborted); }
        catch (InvalidDataException e)
        {
            errors["body"] = [$"the body is not valid multipart/form-data: {e.Message}"];
            return new(null, ImageBody.Invalid(errors), null);
        }
        catch (IOException)
        {
            // The body is in memory, so this is the parser running out of it: no closing boundary, or another boundary.
            errors["body"] = [$"the body is not valid multipart/form-data: it ends before the closing boundary that the Content-Type names " +
                $"(--{MultipartBoundary(request.ContentType)}--)"];
            return new(null, ImageBody.Invalid(errors), null);
        }

        // A file field sent as text is that field's error (File); a variation has no mask, so its text "mask" is unknown.
        var text = form.Where(f => f.Key is not (Strength or Image) && !(f.Key == Mask && !variation)).ToList();
        if (variation && form.ContainsKey(Prompt))
            errors.AddError(Prompt, ["prompt is not a field of variations: the class is the one the model finds in the image"]);
        double? strength = ReadStrength(form, errors);
        byte[]? imagePng = File(form, Image, required: true, errors), maskPng = variation ? null : File(form, Mask, required: false, errors);
        foreach (var file in form.Files.Where(f => f.Name is not (Image or Mask) || (variation && f.Name == Mask)).Select(f => f.Name).Distinct())
            errors.AddError(file, [$"unknown file field '{file}'; send the picture as '{Image}'{(variation ? "" : $" and the optional mask as '{Mask}'")}"]);

        var json = AsJson(variation ? text.Where(f => f.Key != Prompt).Prepend(new(Prompt, "0")) : text);
        var parsed = OpenAIImageRequestParser.Parse(json, ImageBody.LimitsOf(model, o), model.ImageSize, out var fieldErrors);
        foreach (var (field, messages) in fieldErrors) errors.AddError(field, messages);

        var pixels = Decode(errors, Image, () => PngImageReader.Pixels(imagePng!, model.ImageSize, model.ImageChannels, Image, resizeSquare: true), imagePng);
        var mask = Decode(errors, Mask, () => ReadMask(imagePng, maskPng!, model.ImageSize), maskPng);
        if (errors.Count > 0 || parsed is null || pixels is null) return new(null, ImageBody.Invalid(errors), null);

        var edit = new ImageEdit(pixels, model.ImageSize, model.ImageChannels, strength ?? (mask is null ? DefaultStrength : DefaultMaskedStrength), mask);
        return new(new Upload(parsed.Parameters with { Edit = edit }, parsed.ResponseFormat), null, null);
    }

    /// <summary>OpenAI's mask: of the image's own size (both are then resized alike), transparent where it redraws.</summary>
    private static byte[] ReadMask(byte[]? imagePng, byte[] maskPng, int size)
    {
        var mask = PngImageReader.Header(maskPng, Mask);
        if (Dimensions(imagePng) is { } image && image != mask)
            throw new ImageInputException(Mask, $"mask must have the image's size, {image.Width}x{image.Height}, got {mask.Width}x{mask.Height}");
        return PngImageReader.Mask(maskPng, size, Mask, MaskSource.Transparency, resizeSquare: true);
    }

    /// <summary>The image's size, or null when it is missing or unreadable (an error of the image, told once).</summary>
    private static (int Width, int Height)? Dimensions(byte[]? png)
    {
        if (png is null) return null;
        try { return PngImageReader.Header(png, Image); }
        catch (ImageInputException) { return null; }
    }

    private static string MultipartBoundary(string? contentType) =>
        Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out var parsed)
            ? Microsoft.Net.Http.Headers.HeaderUtilities.RemoveQuotes(parsed.Boundary).ToString() : "";

    /// <summary>Whether <paramref name="name"/> is a field of these forms (as opposed to an unknown one).</summary>
    public static bool IsField(string name) => name is Image or Mask or Strength || OpenAIImageRequestParser.IsField(name);

    private static double? ReadStrength(IFormCollection form, Dictionary<string, string[]> errors)
    {
        if (!form.TryGetValue(Strength, out var values)) return null;
        if (values.Count == 1 && double.TryParse(values[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s > 0 && s <= 1) return s;
        errors.AddError(Strength, [$"strength must be a number with 0 < strength ≤ 1, not {JsonSerializer.Serialize(values.ToString())}"]);
        return null;
    }

    /// <summary>The bytes of a file part; a missing required one, a text part in its place, two of them, or one over
    /// <see cref="MaxFileBytes"/> is an error of that field.</summary>
    private static byte[]? File(IFormCollection form, string name, bool required, Dictionary<string, string[]> errors)
    {
        var files = form.Files.GetFiles(name);
        string what = name == Image ? "a PNG file of the picture" : "a PNG file whose transparent pixels are redrawn";
        if (files.Count == 0)
        {
            if (form.ContainsKey(name)) errors.AddError(name, [$"{name} must be a file part ({what}), not a text field"]);
            else if (required) errors.AddError(name, [$"{name} is required: {what}"]);
            return null;
        }
        if (files.Count > 1) errors.AddError(name, [$"{name} is given {files.Count} times; send one file"]);
        else if (files[0].Length > MaxFileBytes) errors.AddError(name, [$"{name} is {files[0].Length} bytes, over the limit of {MaxFileBytes} bytes"]);
        else
        {
            using var stream = new MemoryStream((int)files[0].Length);
            files[0].CopyTo(stream);
            return stream.ToArray();
        }
        return null;
    }

    private static byte[]? Decode(Dictionary<string, string[]> errors, string field, Func<byte[]> read, byte[]? png)
    {
        if (png is null) return null;
        try { return read(); }
        catch (ImageInputException e)
        {
            errors.AddError(field, [e.Reason]);
            return null;
        }
    }

    /// <summary>The JSON object the text fields stand for. A form sends every value as text: one that reads as a JSON
    /// number, boolean or array is written as that (so <c>n=2</c> is the integer 2), any other as a string; a repeated
    /// field is written twice, which the JSON rules refuse by name.</summary>
    private static byte[] AsJson(IEnumerable<KeyValuePair<string, StringValues>> fields)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            foreach (var (name, values) in fields)
                foreach (var value in values)
                {
                    writer.WritePropertyName(name);
                    if (Literal(value) is { } literal) literal.WriteTo(writer);
                    else writer.WriteStringValue(value);
                }
            writer.WriteEndObject();
        }
        return stream.ToArray();
    }

    private static JsonElement? Literal(string? value)
    {
        var t = value?.Trim() ?? "";
        if (t.Length == 0 || !(char.IsAsciiDigit(t[0]) || t[0] is '-' or '[' || t is "true" or "false")) return null;
        try
        {
            using var doc = JsonDocument.Parse(t, new JsonDocumentOptions { MaxDepth = 4 });
            return doc.RootElement.ValueKind is JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Array
                ? doc.RootElement.Clone() : null;
        }
        catch (JsonException) { return null; }
    }
}
