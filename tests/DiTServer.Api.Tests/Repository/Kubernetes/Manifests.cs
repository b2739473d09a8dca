using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace DiTServer.Api.Tests.Kubernetes;

/// <summary>One object of a rendered overlay: its YAML text and the same as JSON (for the CRD schema checks).</summary>
public sealed record ManifestObject(string ApiVersion, string Kind, string Name, string Yaml, JsonObject Json)
{
    public override string ToString() => $"{ApiVersion}/{Kind} {Name}";
}

/// <summary>Renders the kustomize overlays under deploy/kubernetes and loads every object strictly: built-in kinds through
/// the official client's YAML (unknown fields and wrong types throw), custom resources against their CRD's schema.</summary>
public static class Manifests
{
    public static string Folder => Path.Combine(RepositoryPaths.Root, "deploy", "kubernetes");

    public static readonly string[] Overlays = ["gpu", "gpu-hpa", "gpu-shared", "gpu-pvc", "cpu"];

    /// <summary>The built-in kinds the overlays may contain, keyed as KubernetesYaml's type map wants.</summary>
    private static readonly Dictionary<string, Type> BuiltIn = new()
    {
        ["v1/ConfigMap"] = typeof(V1ConfigMap),
        ["v1/Service"] = typeof(V1Service),
        ["apps/v1/Deployment"] = typeof(V1Deployment),
        ["policy/v1/PodDisruptionBudget"] = typeof(V1PodDisruptionBudget),
        ["autoscaling/v2/HorizontalPodAutoscaler"] = typeof(V2HorizontalPodAutoscaler),
        ["networking.k8s.io/v1/Ingress"] = typeof(V1Ingress),
        ["v1/PersistentVolumeClaim"] = typeof(V1PersistentVolumeClaim),
        ["batch/v1/Job"] = typeof(V1Job),
    };

    /// <summary>The CRDs kept as test resources (Kubernetes/crds, with their source in crds/SOURCES.md).</summary>
    private static readonly Lazy<Dictionary<string, CrdSchema>> Crds = new(() => new[]
    {
        CrdSchema.Load("keda.sh_scaledobjects.yaml"),
        CrdSchema.Load("monitoring.coreos.com_servicemonitors.yaml"),
    }.ToDictionary(c => c.ApiVersion + "/" + c.Kind));

    /// <summary><c>kubectl kustomize</c> of one overlay (kubectl ships kustomize; it is on the project's machine image).</summary>
    public static string Render(string overlay) => RenderFolder(Path.Combine(Folder, "overlays", overlay));

    public static string RenderFolder(string folder)
    {
        string overlay = Path.GetFileName(folder);
        var start = new ProcessStartInfo("kubectl", ["kustomize", folder])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        Process process;
        try { process = Process.Start(start)!; }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("kubectl not found: these checks render the overlays with `kubectl kustomize` (kubectl is on the dotnet " +
                "machine image)", e);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(60_000)) { process.Kill(); throw new TimeoutException($"kubectl kustomize {overlay} ran for 60 s"); }
            Assert.True(process.ExitCode == 0, $"kubectl kustomize {overlay} failed: {stderr.Result}");
            return stdout.Result;
        }
    }

    public static IReadOnlyList<ManifestObject> Load(string overlay) => Parse(Render(overlay));

    /// <summary>Splits a multi-document YAML stream and checks each object strictly; throws on the first bad one.</summary>
    public static IReadOnlyList<ManifestObject> Parse(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        var objects = new List<ManifestObject>();
        foreach (var document in stream.Documents)
        {
            var json = (JsonObject)ToJson(document.RootNode)!;
            string apiVersion = (string?)json["apiVersion"] ?? throw new InvalidDataException("an object without apiVersion");
            string kind = (string?)json["kind"] ?? throw new InvalidDataException("an object without kind");
            string name = (string?)json["metadata"]?["name"] ?? throw new InvalidDataException($"a {kind} without metadata.name");
            var text = Serialize(document);
            string key = apiVersion + "/" + kind;
            if (BuiltIn.TryGetValue(key, out var type))
            {
                // strict: an unknown field or a value of the wrong type throws instead of being dropped.
                var loaded = KubernetesYaml.LoadAllFromString(text, new Dictionary<string, Type> { [key] = type }, strict: true);
                Assert.IsType(type, Assert.Single(loaded));
            }
            else if (Crds.Value.TryGetValue(key, out var crd))
            {
                var errors = crd.Validate(json);
                if (errors.Count > 0) throw new InvalidDataException($"{key} {name} does not match its CRD schema:\n  " + string.Join("\n  ", errors));
            }
            else throw new InvalidDataException($"{key} {name}: a kind these checks do not know (add its type or CRD)");
            objects.Add(new ManifestObject(apiVersion, kind, name, text, json));
        }
        return objects;
    }

    public static T Get<T>(IReadOnlyList<ManifestObject> objects, string kind, string name = "ditserver")
    {
        var o = objects.Single(x => x.Kind == kind && x.Name == name);
        return KubernetesYaml.Deserialize<T>(o.Yaml, strict: true);
    }

    private static string Serialize(YamlDocument document)
    {
        var writer = new StringWriter();
        new YamlStream(document).Save(writer, assignAnchors: false);
        return writer.ToString();
    }

    /// <summary>YAML as JSON the way the API server reads it: quoted scalars stay strings, plain ones become numbers,
    /// booleans or null (YAML 1.2 core schema, which is what kubectl and the API server use).</summary>
    public static JsonNode? ToJson(YamlNode node) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(kv =>
            KeyValuePair.Create(((YamlScalarNode)kv.Key).Value!, ToJson(kv.Value)))),
        YamlSequenceNode seq => new JsonArray(seq.Children.Select(ToJson).ToArray()),
        YamlScalarNode s when s.Style is ScalarStyle.Plain => Plain(s.Value ?? ""),
        YamlScalarNode s => JsonValue.Create(s.Value ?? ""),
        _ => throw new InvalidDataException($"unsupported YAML node {node.NodeType}"),
    };

    private static JsonNode? Plain(string v)
    {
        if (v is "" or "~" or "null" or "Null" or "NULL") return null;
        if (v is "true" or "True" or "TRUE") return JsonValue.Create(true);
        if (v is "false" or "False" or "FALSE") return JsonValue.Create(false);
        if (long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return JsonValue.Create(l);
        if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && v.Any(char.IsDigit)) return JsonValue.Create(d);
        return JsonValue.Create(v);
    }
}
