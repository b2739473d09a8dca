using System.Globalization;
using System.Text.Json.Nodes;

namespace DiTServer.Core.Checkpoints;

/// <summary>The sampling a model folder asks for when a request names none: <c>"defaults"</c> in model.json, written
/// for a distilled student (the sampler and steps it was distilled for). Names are the API's wire names; the
/// Pipeline turns them into sampling options and refuses unknown ones (<see cref="Pipeline.ServedDefaults"/>).</summary>
public sealed record ModelDefaults(string Sampler, int Steps, int? Order, string? Spacing, double? CfgScale)
{
    public JsonObject ToJson()
    {
        var o = new JsonObject { ["sampler"] = Sampler, ["steps"] = Steps };
        if (Order is { } order) o["order"] = order;
        if (Spacing is not null) o["spacing"] = Spacing;
        if (CfgScale is { } cfg) o["cfg_scale"] = cfg;
        return o;
    }

    /// <exception cref="InvalidDataException">A field is missing or of the wrong type; the message names it.</exception>
    public static ModelDefaults Parse(JsonNode node, string path)
    {
        InvalidDataException Bad(string field, string why) => new($"{path}: 'defaults.{field}' {why}");
        if (node is not JsonObject o) throw new InvalidDataException($"{path}: 'defaults' must be an object such as {{\"sampler\": \"unipc\", \"steps\": 5}}");
        string sampler = o["sampler"] is JsonValue s && s.TryGetValue<string>(out var name) && name.Length > 0 ? name
            : throw Bad("sampler", "is required (a sampler name)");
        int steps = o["steps"] is JsonValue st && st.TryGetValue<int>(out var n) && n > 0 ? n : throw Bad("steps", "must be a positive integer");
        int? order = o["order"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<int>(out var k) => k,
            var other => throw Bad("order", $"must be an integer, got {other.ToJsonString()}"),
        };
        string? spacing = o["spacing"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var sp) => sp,
            var other => throw Bad("spacing", $"must be a spacing name, got {other.ToJsonString()}"),
        };
        double? cfg = o["cfg_scale"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<double>(out var c) => c,
            var other => throw Bad("cfg_scale", $"must be a number, got {other.ToJsonString()}"),
        };
        return new ModelDefaults(sampler, steps, order, spacing, cfg);
    }

    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Sampler}, {Steps} steps{(Order is { } k ? $", order {k}" : "")}");
}
