using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using k8s;
using k8s.Models;
using YamlDotNet.RepresentationModel;

namespace DiTServer.Api.Tests.Kubernetes;

/// <summary>A CustomResourceDefinition's structural schema (OpenAPI v3 subset) applied the way the API server does with
/// strict field validation: unknown fields fail unless the schema preserves them, and types, enums, bounds, patterns
/// and required fields are checked. Its CEL rules (<c>x-kubernetes-validations</c>) are checked only where a rule is known
/// here; any other rule fails the check, so a new rule in an updated CRD is noticed rather than skipped.</summary>
public sealed class CrdSchema
{
    /// <summary>The CEL rules this class can evaluate, by their exact text in the CRD.</summary>
    private static readonly Dictionary<string, Func<JsonObject, bool>> KnownRules = new()
    {
        // keda.sh_scaledobjects.yaml, spec: min ≤ max, with KEDA's default max of 100.
        ["!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)"] =
            spec => spec["minReplicaCount"] is not { } min || (long)min <= (spec["maxReplicaCount"] is { } max ? (long)max : 100),
    };

    private CrdSchema(string apiVersion, string kind, JsonObject schema)
    {
        ApiVersion = apiVersion;
        Kind = kind;
        Schema = schema;
    }

    public string ApiVersion { get; }
    public string Kind { get; }
    public JsonObject Schema { get; }

    public static CrdSchema Load(string file)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Kubernetes", "crds", file);
        var stream = new YamlStream();
        stream.Load(new StringReader(File.ReadAllText(path)));
        var crd = (JsonObject)Manifests.ToJson(stream.Documents.Single().RootNode)!;
        var spec = crd["spec"]!;
        // The version the API server stores is the one manifests should be written against.
        var version = spec["versions"]!.AsArray().Single(v => (bool)v!["storage"]!)!;
        return new CrdSchema($"{spec["group"]}/{version["name"]}", (string)spec["names"]!["kind"]!,
            version["schema"]!["openAPIV3Schema"]!.AsObject());
    }

    public List<string> Validate(JsonObject resource)
    {
        var errors = new List<string>();
        Check(resource, Schema, "", errors);
        // The CRD leaves metadata open (the API server applies ObjectMeta itself): check it as ObjectMeta, strictly.
        if (resource["metadata"] is JsonObject metadata)
        {
            // JSON is YAML: the client's strict YAML reader then refuses unknown fields and wrong types.
            try { KubernetesYaml.Deserialize<V1ObjectMeta>(metadata.ToJsonString(), strict: true); }
            catch (YamlDotNet.Core.YamlException e) { errors.Add($".metadata: {e.Message} {e.InnerException?.Message}"); }
        }
        return errors;
    }

    private static void Check(JsonNode? value, JsonObject schema, string path, List<string> errors)
    {
        string at = path == "" ? "." : path;
        if (value is null)
        {
            if (!((bool?)schema["nullable"] ?? false)) errors.Add($"{at}: null is not allowed");
            return;
        }
        if ((bool?)schema["x-kubernetes-int-or-string"] == true)
        {
            if (!IsInteger(value) && !IsString(value)) errors.Add($"{at}: expected an integer or a string, got {Describe(value)}");
            return;
        }
        switch ((string?)schema["type"])
        {
            case "object":
                if (value is not JsonObject obj) { errors.Add($"{at}: expected an object, got {Describe(value)}"); return; }
                CheckObject(obj, schema, path, errors);
                break;
            case "array":
                if (value is not JsonArray array) { errors.Add($"{at}: expected an array, got {Describe(value)}"); return; }
                if (schema["items"] is JsonObject items)
                    for (int i = 0; i < array.Count; i++) Check(array[i], items, $"{path}[{i}]", errors);
                break;
            case "string":
                if (!IsString(value)) { errors.Add($"{at}: expected a string, got {Describe(value)}"); return; }
                var s = (string)value!;
                if (schema["enum"] is JsonArray options && !options.Select(o => (string?)o).Contains(s))
                    errors.Add($"{at}: '{s}' is not one of {string.Join(", ", options)}");
                if ((string?)schema["pattern"] is { } pattern && !Regex.IsMatch(s, pattern))
                    errors.Add($"{at}: '{s}' does not match {pattern}");
                break;
            case "integer":
                if (!IsInteger(value)) { errors.Add($"{at}: expected an integer, got {Describe(value)}"); return; }
                CheckBounds((long)value!, schema, at, errors);
                if ((string?)schema["format"] == "int32" && ((long)value! < int.MinValue || (long)value! > int.MaxValue))
                    errors.Add($"{at}: {value} does not fit int32");
                break;
            case "number":
                if (value is not JsonValue v || !v.TryGetValue<double>(out _) && !v.TryGetValue<long>(out _))
                    errors.Add($"{at}: expected a number, got {Describe(value)}");
                break;
            case "boolean":
                if (value is not JsonValue b || !b.TryGetValue<bool>(out _)) errors.Add($"{at}: expected a boolean, got {Describe(value)}");
                break;
            case null when (bool?)schema["x-kubernetes-preserve-unknown-fields"] == true:
                break;
            default:
                errors.Add($"{at}: schema type '{schema["type"]}' is not handled by this checker");
                break;
        }
    }

    private static void CheckObject(JsonObject obj, JsonObject schema, string path, List<string> errors)
    {
        var properties = schema["properties"] as JsonObject;
        bool preserve = (bool?)schema["x-kubernetes-preserve-unknown-fields"] == true;
        foreach (var (key, child) in obj)
        {
            string childPath = $"{path}.{key}";
            if (path == "" && key == "metadata") continue; // ObjectMeta, checked in Validate
            if (properties?[key] is JsonObject childSchema) Check(child, childSchema, childPath, errors);
            else if (schema["additionalProperties"] is JsonObject additional) Check(child, additional, childPath, errors);
            else if (preserve || (bool?)schema["additionalProperties"] == true) { }
            else errors.Add($"{childPath}: unknown field (the CRD schema does not declare it)");
        }
        if (schema["required"] is JsonArray required)
            foreach (var name in required.Select(r => (string)r!))
                if (!obj.ContainsKey(name)) errors.Add($"{(path == "" ? "." : path)}: required field '{name}' is missing");
        if (schema["x-kubernetes-validations"] is JsonArray rules)
            foreach (var rule in rules)
            {
                var text = (string)rule!["rule"]!;
                if (!KnownRules.TryGetValue(Normalize(text), out var check))
                    errors.Add($"{path}: CEL rule not evaluated by this checker, add it: {text}");
                else if (!check(obj)) errors.Add($"{path}: {rule["message"]}");
            }
    }

    private static string Normalize(string rule) => Regex.Replace(rule, @"\s+", " ").Trim();

    private static void CheckBounds(long n, JsonObject schema, string at, List<string> errors)
    {
        if (schema["minimum"] is { } min && n < (long)min) errors.Add($"{at}: {n} is below the minimum {min}");
        if (schema["maximum"] is { } max && n > (long)max) errors.Add($"{at}: {n} is above the maximum {max}");
    }

    private static bool IsString(JsonNode node) => node is JsonValue v && v.TryGetValue<string>(out _);
    private static bool IsInteger(JsonNode node) => node is JsonValue v && v.TryGetValue<long>(out _);
    private static string Describe(JsonNode node) => node is JsonValue ? $"{node.GetValueKind().ToString().ToLowerInvariant()} {node.ToJsonString()}"
        : node.GetType().Name;
}
