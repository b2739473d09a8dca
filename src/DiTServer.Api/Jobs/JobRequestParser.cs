using System.Buffers;
using System.Text.Json;
using DiTServer.Api.Endpoints;
using DiTServer.Core.Serving;

namespace DiTServer.Api.Jobs;

/// <summary>Reads the body of <c>POST /v1/jobs</c>: the body of <c>POST /v1/images</c> plus the jobs-only field
/// <c>preview_every</c> (0 or absent: no previews; k in 1..steps: a <c>preview</c> event after every k-th step but the
/// last). Only jobs take it: <c>/v1/images</c> answers once, when the images are done, so it has nowhere to send previews.</summary>
/// <remarks><c>preview_every</c> is taken out and every other property goes, unchanged, to <see cref="ImageRequestParser"/>,
/// so both endpoints check the shared fields with the same messages.</remarks>
public static class JobRequestParser
{
    public const string PreviewEvery = "preview_every";

    public sealed record Request(GenerationParameters Parameters, int PreviewEvery);

    /// <param name="previewsUnsupported">Why the served model cannot make previews, or null when it can.</param>
    /// <returns>The request, or null with <paramref name="errors"/> keyed by field.</returns>
    public static Request? Parse(ReadOnlyMemory<byte> body, ImageRequestParser.Limits limits, string? previewsUnsupported,
        out Dictionary<string, string[]> errors)
    {
        if (Split(body) is not var (rest, previewValues))
        {
            // Not a UTF-8 JSON object: the images parser says what is wrong with it, in its words.
            var parameters = ImageRequestParser.Parse(body, limits, out errors, [PreviewEvery]);
            return parameters is null ? null : new Request(parameters, 0);
        }
        var parsed = ImageRequestParser.Parse(rest, limits, out errors, [PreviewEvery]);
        int every = PreviewSteps(previewValues, parsed?.Sampling.Steps, previewsUnsupported, errors);
        return errors.Count == 0 && parsed is not null ? new Request(parsed, every) : null;
    }

    /// <summary>The body without <c>preview_every</c>, and that field's raw values (usually none or one); null when the
    /// body is not a JSON object in valid UTF-8 text.</summary>
    private static (ReadOnlyMemory<byte> Others, List<string> PreviewValues)? Split(ReadOnlyMemory<byte> body)
    {
        if (!System.Text.Unicode.Utf8.IsValid(body.Span)) return null;
        try
        {
            using var doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return null;
            var values = new List<string>();
            var buffer = new ArrayBufferWriter<byte>();
            using (var writer = new Utf8JsonWriter(buffer))
            {
                writer.WriteStartObject();
                foreach (var property in doc.RootElement.EnumerateObject())
                {
                    if (property.NameEquals(PreviewEvery)) values.Add(property.Value.GetRawText());
                    else property.WriteTo(writer); // duplicates and unknown fields too: the images parser reports them
                }
                writer.WriteEndObject();
            }
            return (buffer.WrittenMemory, values);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException)
        {
            return null; // malformed JSON or text the writer refuses (a lone surrogate): the images parser explains
        }
    }

    /// <summary>0 when absent or null; else an integer in 1..<paramref name="steps"/> (0..1000 while steps is invalid).</summary>
    private static int PreviewSteps(List<string> raw, int? steps, string? unsupported, Dictionary<string, string[]> errors)
    {
        if (raw.Count == 0) return 0;
        if (raw.Count > 1)
        {
            Add(errors, $"field '{PreviewEvery}' appears more than once");
            return 0;
        }
        using var doc = JsonDocument.Parse(raw[0]);
        var v = doc.RootElement;
        if (v.ValueKind == JsonValueKind.Null) return 0;
        int max = steps ?? ImageRequestParser.MaxSteps;
        string range = steps is null ? $"1..steps" : $"1..{max} (the job's steps)";
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out var every))
        {
            Add(errors, $"{PreviewEvery} must be an integer: 0 for no previews, or {range}, not {raw[0]}");
            return 0;
        }
        if (every < 0 || every > max)
        {
            Add(errors, $"{PreviewEvery} must be 0 (no previews) or in {range}, got {every}");
            return 0;
        }
        if (every > 0 && unsupported is not null)
        {
            Add(errors, $"{PreviewEvery}: {unsupported}");
            return 0;
        }
        return (int)every;
    }

    private static void Add(Dictionary<string, string[]> errors, string message) =>
        errors[PreviewEvery] = errors.TryGetValue(PreviewEvery, out var existing) ? [.. existing, message] : [message];
}
