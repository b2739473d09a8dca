using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using DiTServer.Core.Serving;
using k8s.Models;

namespace DiTServer.Api.Tests.Kubernetes;

/// <summary>What the manifests must agree on with the server and the image: read from the server itself (a running
/// test host), from appsettings.json and from the Dockerfile, never copied into the test.</summary>
/// <param name="Get">Status of a GET on the running server.</param>
/// <param name="ExportedMetrics">Metric names in the server's /metrics, with the label names of their samples.</param>
/// <param name="HostShutdownTimeout">The host's shutdown timeout, as the server resolves it.</param>
/// <param name="ImagePort">The port the image listens on (Dockerfile's ASPNETCORE_URLS).</param>
/// <param name="AppSettings">src/DiTServer.Api/appsettings.json.</param>
public sealed record ServerFacts(Func<string, Task<HttpStatusCode>> Get, IReadOnlyDictionary<string, IReadOnlySet<string>> ExportedMetrics,
    TimeSpan HostShutdownTimeout,
    int ImagePort, JsonObject AppSettings);

/// <summary>Cross-checks of one rendered overlay; each returns its problems (empty when all agree), so a test can show
/// that a drifted manifest is caught.</summary>
public static class ManifestChecks
{
    public const string ReadyPath = "/health/ready";
    public const string LivePath = "/health/live";

    public static V1Deployment Deployment(IReadOnlyList<ManifestObject> o) => Manifests.Get<V1Deployment>(o, "Deployment");
    public static V1Container Server(V1Deployment d) => d.Spec.Template.Spec.Containers.Single(c => c.Name == "ditserver");

    /// <summary>The overlay's appsettings.Production.json (ConfigMap ditserver-config).</summary>
    public static JsonObject Settings(IReadOnlyList<ManifestObject> o) =>
        JsonNode.Parse(Manifests.Get<V1ConfigMap>(o, "ConfigMap", "ditserver-config").Data["appsettings.Production.json"])!.AsObject();

    /// <summary>A setting from the overlay's ConfigMap, else from appsettings.json (the order ASP.NET reads them in).</summary>
    public static string? Setting(IReadOnlyList<ManifestObject> o, ServerFacts facts, string section, string key) =>
        (string?)(Settings(o)[section]?[key] ?? facts.AppSettings[section]?[key])?.ToString();

    public static async Task<List<string>> Probes(IReadOnlyList<ManifestObject> o, ServerFacts facts)
    {
        var problems = new List<string>();
        var c = Server(Deployment(o));
        var named = c.Ports.SingleOrDefault(p => p.Name == "http");
        if (named is null) problems.Add("the container has no port named http");
        else if (named.ContainerPort != facts.ImagePort) problems.Add($"containerPort {named.ContainerPort}, but the image listens on {facts.ImagePort}");
        foreach (var (what, probe, path) in new[] { ("startupProbe", c.StartupProbe, ReadyPath), ("readinessProbe", c.ReadinessProbe, ReadyPath),
            ("livenessProbe", c.LivenessProbe, LivePath) })
        {
            if (probe?.HttpGet is not { } get) { problems.Add($"{what}: missing or not httpGet"); continue; }
            if (get.Path != path) problems.Add($"{what} path {get.Path}, expected {path}");
            if (get.Port.Value != "http" && get.Port.Value != facts.ImagePort.ToString(CultureInfo.InvariantCulture))
                problems.Add($"{what} port {get.Port.Value} is not the server's");
            var status = await facts.Get(get.Path);
            if (status != HttpStatusCode.OK) problems.Add($"{what} path {get.Path} answers {(int)status} on a warmed-up server");
        }
        if (c.ReadinessProbe?.FailureThreshold is > 1)
            problems.Add("readinessProbe.failureThreshold > 1: a pod with a full queue would keep receiving requests for several periods");
        return problems;
    }

    public static List<string> GracePeriod(IReadOnlyList<ManifestObject> o, ServerFacts facts)
    {
        var problems = new List<string>();
        var d = Deployment(o);
        var c = Server(d);
        long grace = d.Spec.Template.Spec.TerminationGracePeriodSeconds ?? 30;
        var preStop = c.Lifecycle?.PreStop;
        double delay = preStop?.Sleep?.Seconds
            ?? (preStop?.Exec?.Command is ["sleep", var s] ? double.Parse(s, CultureInfo.InvariantCulture) : double.NaN);
        if (double.IsNaN(delay)) { problems.Add("no preStop delay (sleep) on the server container"); delay = 0; }
        var drain = TimeSpan.Parse(Setting(o, facts, "Serving", "DrainTimeout")!, CultureInfo.InvariantCulture);
        if (drain >= facts.HostShutdownTimeout)
            problems.Add($"Serving:DrainTimeout {drain} is not under the host's shutdown timeout {facts.HostShutdownTimeout}");
        if (grace <= delay + facts.HostShutdownTimeout.TotalSeconds)
            problems.Add($"terminationGracePeriodSeconds {grace} must exceed the preStop delay {delay} s + the host's shutdown timeout " +
                $"{facts.HostShutdownTimeout.TotalSeconds} s (Serving:DrainTimeout {drain.TotalSeconds} s runs inside it)");
        return problems;
    }

    /// <summary>The autoscaler's query names metrics the server exports, and its per-pod target sits below the queue
    /// capacity (else pods go not-ready and refuse work before the autoscaler adds any).</summary>
    public static List<string> Autoscaling(IReadOnlyList<ManifestObject> o, ServerFacts facts)
    {
        var problems = new List<string>();
        int capacity = int.Parse(Setting(o, facts, "Serving", "QueueCapacity")!, CultureInfo.InvariantCulture);
        var scaled = o.SingleOrDefault(x => x.Kind == "ScaledObject");
        var hpa = o.SingleOrDefault(x => x.Kind == "HorizontalPodAutoscaler");
        if ((scaled is null) == (hpa is null)) problems.Add("exactly one of a KEDA ScaledObject or an HPA is expected");
        if (scaled is not null)
        {
            var trigger = scaled.Json["spec"]!["triggers"]!.AsArray().Single()!;
            if ((string?)trigger["type"] != "prometheus") problems.Add("the KEDA trigger is not prometheus");
            if ((string?)scaled.Json["spec"]!["scaleTargetRef"]!["name"] != Deployment(o).Metadata.Name)
                problems.Add("the ScaledObject targets another Deployment");
            problems.AddRange(Metrics((string)trigger["metadata"]!["query"]!, "ScaledObject query", facts));
            problems.AddRange(Threshold(double.Parse((string)trigger["metadata"]!["threshold"]!, CultureInfo.InvariantCulture), capacity,
                "ScaledObject threshold"));
        }
        if (hpa is not null)
        {
            var h = Manifests.Get<V2HorizontalPodAutoscaler>(o, "HorizontalPodAutoscaler");
            var metric = h.Spec.Metrics.Single();
            var adapter = AdapterRules();
            var rule = adapter.SingleOrDefault(r => (string?)r["name"]?["as"] == metric.Pods?.Metric.Name);
            if (rule is null) problems.Add($"prometheus-adapter-values.yaml has no rule serving {metric.Pods?.Metric.Name}");
            else
            {
                problems.AddRange(Metrics((string)rule["seriesQuery"]!, "adapter seriesQuery", facts));
                problems.AddRange(Metrics((string)rule["metricsQuery"]!, "adapter metricsQuery", facts));
            }
            problems.AddRange(Threshold(metric.Pods!.Target.AverageValue.ToDouble(), capacity, "HPA averageValue"));
        }
        return problems;
    }

    private static IEnumerable<string> Metrics(string query, string where, ServerFacts facts)
    {
        var names = Regex.Matches(query, @"\bdit_[a-z_]+\b").Select(m => m.Value).Distinct().ToList();
        if (names.Count == 0) yield return $"{where} names no dit_ metric: {query}";
        foreach (var name in names.Where(n => !facts.ExportedMetrics.ContainsKey(n)))
            yield return $"{where} uses {name}, which /metrics does not export";
        // PromQL adds two vectors only where their label sets are equal: metrics with different labels (a device label on
        // one, none on the other) must each be aggregated on their own first, or the sum is silently empty.
        var known = names.Where(facts.ExportedMetrics.ContainsKey).ToList();
        if (known.Select(n => string.Join(',', facts.ExportedMetrics[n].Order())).Distinct().Count() > 1)
            foreach (var name in known.Where(n => !Regex.IsMatch(query, @"sum(\s+by\s*\([^)]*\))?\s*\(\s*(avg_over_time\s*\(\s*)?" + n + @"\b")))
                yield return $"{where}: {name} (labels {string.Join(", ", facts.ExportedMetrics[name])}) is combined with metrics of other labels without " +
                    $"its own sum(...)";
    }

    private static IEnumerable<string> Threshold(double perPod, int capacity, string where)
    {
        if (perPod <= 0 || perPod >= capacity) yield return $"{where} {perPod} per pod must be above 0 and below Serving:QueueCapacity {capacity}";
    }

    public static List<JsonObject> AdapterRules()
    {
        var yaml = File.ReadAllText(Path.Combine(Manifests.Folder, "components", "hpa", "prometheus-adapter-values.yaml"));
        var stream = new YamlDotNet.RepresentationModel.YamlStream();
        stream.Load(new StringReader(yaml));
        var root = Manifests.ToJson(stream.Documents.Single().RootNode)!;
        return root["rules"]!["custom"]!.AsArray().Select(r => r!.AsObject()).ToList();
    }

    /// <summary>Every key of the ConfigMap's appsettings is one the server reads: a property of the options class bound to
    /// its section (found by the classes' <c>Section</c> constants), or for sections without one (Logs) a key of
    /// appsettings.json. A renamed setting would otherwise be ignored silently by the pods.</summary>
    public static List<string> SettingsKeys(IReadOnlyList<ManifestObject> o, ServerFacts facts)
    {
        var problems = new List<string>();
        foreach (var (section, node) in Settings(o))
        {
            if (OptionsSections.TryGetValue(section, out var type))
            {
                foreach (var (key, _) in node!.AsObject())
                    if (type.GetProperty(key, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance
                            | System.Reflection.BindingFlags.IgnoreCase) is not { CanWrite: true })
                        problems.Add($"ConfigMap setting {section}:{key} is not a property of {type.Name}");
            }
            else if (facts.AppSettings.FirstOrDefault(kv => string.Equals(kv.Key, section, StringComparison.OrdinalIgnoreCase)).Value is not JsonObject known)
                problems.Add($"ConfigMap section {section} is neither an options class's section nor in appsettings.json");
            else
                foreach (var (key, _) in node!.AsObject())
                    if (!known.Any(kv => string.Equals(kv.Key, key, StringComparison.OrdinalIgnoreCase)))
                        problems.Add($"ConfigMap setting {section}:{key} is not in appsettings.json");
        }
        return problems;
    }

    /// <summary>Options classes by the configuration section they bind (their <c>public const string Section</c>).</summary>
    private static readonly Dictionary<string, Type> OptionsSections =
        new[] { typeof(Program).Assembly, typeof(ServingOptions).Assembly }
            .SelectMany(a => a.GetTypes())
            .Select(t => (Type: t, Field: t.GetField("Section", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)))
            .Where(x => x.Field is { IsLiteral: true } && x.Field.FieldType == typeof(string))
            .ToDictionary(x => (string)x.Field!.GetRawConstantValue()!, x => x.Type, StringComparer.OrdinalIgnoreCase);

    /// <summary>Pod security, GPU limits per variant, and the selectors of the Service, PDB and ServiceMonitor.</summary>
    public static List<string> Shape(IReadOnlyList<ManifestObject> o, bool gpu)
    {
        var problems = new List<string>();
        var d = Deployment(o);
        var pod = d.Spec.Template.Spec;
        var c = Server(d);
        var labels = d.Spec.Template.Metadata.Labels;
        bool Selects(IDictionary<string, string>? selector) => selector is { Count: > 0 }
            && selector.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);
        // Every pod of the overlay (the server's, and a weights Job's if any): non-root, read-only root, writable /tmp.
        var pods = new List<(string Name, V1PodSpec Spec)> { ("Deployment", pod) };
        pods.AddRange(o.Where(x => x.Kind == "Job").Select(x => ("Job " + x.Name, Manifests.Get<V1Job>(o, "Job", x.Name).Spec.Template.Spec)));
        foreach (var (owner, spec) in pods)
        {
            if (spec.SecurityContext?.RunAsNonRoot != true) problems.Add($"{owner}: pod runAsNonRoot is not true");
            foreach (var container in spec.Containers.Concat(spec.InitContainers ?? []))
            {
                if (container.SecurityContext?.ReadOnlyRootFilesystem != true) problems.Add($"{owner} {container.Name}: root filesystem is not read-only");
                if (container.SecurityContext?.AllowPrivilegeEscalation != false) problems.Add($"{owner} {container.Name}: privilege escalation is allowed");
                var tmp = container.VolumeMounts?.SingleOrDefault(m => m.MountPath == "/tmp");
                if (tmp is null || spec.Volumes.Single(v => v.Name == tmp.Name).EmptyDir is null || tmp.ReadOnlyProperty == true)
                    problems.Add($"{owner} {container.Name}: /tmp is not a writable emptyDir");
            }
        }
        int gpus = c.Resources?.Limits?.TryGetValue("nvidia.com/gpu", out var n) == true ? n.ToInt32() : 0;
        if ((gpus >= 1) != gpu) problems.Add(gpu ? "the GPU variant has no nvidia.com/gpu limit" : "the CPU variant asks for a GPU");
        // The container sees its GPUs as cuda:0 … cuda:(limit-1): every engine's device (DiT:Devices, else DiT:Device) must be one.
        var settings = Settings(o)["DiT"];
        var devices = settings?["Devices"] is JsonArray { Count: > 0 } list ? list.Select(d => (string)d!).ToList() : [(string?)settings?["Device"] ?? "cpu"];
        foreach (var device in devices.Where(d => d.StartsWith("cuda", StringComparison.Ordinal)))
        {
            int index = device == "cuda" ? 0 : int.Parse(device["cuda:".Length..], CultureInfo.InvariantCulture);
            if (index >= gpus) problems.Add($"DiT device {device} is not among the pod's {gpus} GPU(s) (nvidia.com/gpu limit)");
        }
        var service = Manifests.Get<V1Service>(o, "Service");
        if (!Selects(service.Spec.Selector)) problems.Add("the Service does not select the pods");
        var port = service.Spec.Ports.Single();
        if (port.TargetPort.Value != "http") problems.Add($"the Service targets port {port.TargetPort.Value}, not the container's http");
        if (!Selects(Manifests.Get<V1PodDisruptionBudget>(o, "PodDisruptionBudget").Spec.Selector.MatchLabels))
            problems.Add("the PDB does not select the pods");
        var monitor = o.Single(x => x.Kind == "ServiceMonitor").Json["spec"]!;
        var endpoint = monitor["endpoints"]!.AsArray().Single()!;
        if ((string?)endpoint["port"] != port.Name) problems.Add($"the ServiceMonitor scrapes port {endpoint["port"]}, the Service's is {port.Name}");
        if ((string?)endpoint["path"] != "/metrics") problems.Add("the ServiceMonitor does not scrape /metrics");
        var monitorLabels = monitor["selector"]!["matchLabels"]!.AsObject().ToDictionary(kv => kv.Key, kv => (string)kv.Value!);
        if (!monitorLabels.All(kv => service.Metadata.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value))
            problems.Add("the ServiceMonitor does not select the Service");
        // Jobs live in the pod that accepted them unless they are shared through Redis: then affinity is required; with the
        // shared store it would only unbalance the pods.
        bool shared = SharesJobs(o);
        if (o.Any(x => x.Kind == "Ingress"))
        {
            var ingress = Manifests.Get<V1Ingress>(o, "Ingress");
            var backend = ingress.Spec.Rules.Single().Http.Paths.Single().Backend.Service;
            if (backend.Name != service.Metadata.Name || backend.Port.Name != port.Name)
                problems.Add($"the Ingress routes to {backend.Name}:{backend.Port.Name}, not the Service's {service.Metadata.Name}:{port.Name}");
            bool cookie = ingress.Metadata.Annotations.TryGetValue("nginx.ingress.kubernetes.io/affinity", out var affinity) && affinity == "cookie";
            if (!shared && !cookie) problems.Add("the Ingress has no cookie affinity: a client's follow-up calls could reach a pod that does not hold its job");
            if (shared && cookie) problems.Add("the Ingress keeps cookie affinity although jobs are shared");
        }
        if (!shared && service.Spec.SessionAffinity != "ClientIP")
            problems.Add("the Service has no ClientIP affinity: a client's follow-up calls could reach a pod that does not hold its job");
        if (shared && service.Spec.SessionAffinity is not (null or "None")) problems.Add("the Service keeps its affinity although jobs are shared");
        return problems;
    }

    /// <summary>True when the pods share jobs through Redis: <c>SharedStore:Redis</c> in the ConfigMap or its environment
    /// variable (from a Secret) on the server container.</summary>
    public static bool SharesJobs(IReadOnlyList<ManifestObject> o) =>
        !string.IsNullOrEmpty((string?)Settings(o)["SharedStore"]?["Redis"])
        || Server(Deployment(o)).Env?.Any(e => e.Name == "SharedStore__Redis") == true;

    /// <summary>The GPU variant pulls a catalogue model with a SHA-256 for every one of its files: in each pod (init
    /// container models-pull), or once in a Job whose marker file the pods wait for before the server starts.</summary>
    public static List<string> ModelsPull(IReadOnlyList<ManifestObject> o)
    {
        var problems = new List<string>();
        var pod = Deployment(o).Spec.Template.Spec;
        var pull = pod.InitContainers?.SingleOrDefault(c => c.Name == "models-pull");
        if (pull is null && o.Any(x => x.Kind == "Job" && x.Name == "ditserver-models-pull"))
        {
            var job = Manifests.Get<V1Job>(o, "Job", "ditserver-models-pull").Spec.Template.Spec;
            pull = job.Containers.Single(c => c.Name == "models-pull");
            var jobScript = string.Join(' ', pull.Command.Concat(pull.Args ?? []));
            var marker = Regex.Match(jobScript, @"touch (\S+)").Groups[1].Value;
            var wait = pod.InitContainers?.SingleOrDefault(c => c.Name == "wait-for-weights");
            if (marker == "") problems.Add("the weights Job writes no marker file");
            else if (wait is null || !string.Join(' ', wait.Command).Contains($"-f {marker}"))
                problems.Add($"no init container waits for the Job's marker {marker}");
            static string? Claim(V1PodSpec spec, V1Container c) =>
                c.VolumeMounts?.SingleOrDefault(m => m.MountPath == "/models") is { } mount
                    ? spec.Volumes.SingleOrDefault(v => v.Name == mount.Name)?.PersistentVolumeClaim?.ClaimName
                    : null;
            var served = Claim(pod, Server(Deployment(o)));
            var written = Claim(job, pull);
            if (served is null || served != written) problems.Add($"the pods read the weights from claim {served}, the Job writes them to {written}");
        }
        if (pull is null) return ["no models-pull init container and no ditserver-models-pull Job"];
        var script = string.Join(' ', pull.Command.Concat(pull.Args ?? []));
        // Every pull writes into the folder the weights volume is mounted at (the server reads DiT:Model from there).
        var mounted = pull.VolumeMounts?.Where(m => m.Name == "models").Select(m => m.MountPath).SingleOrDefault();
        foreach (Match m in Regex.Matches(script, @"--out\s+(\S+)"))
            if (m.Groups[1].Value != mounted) problems.Add($"models pull writes to {m.Groups[1].Value}, but the weights volume is mounted at {mounted}");
        var config = Manifests.Get<V1ConfigMap>(o, "ConfigMap", "ditserver-models").Data;
        foreach (var (modelKey, files) in new[] { ("DIT_MODEL", new[] { "$DIT_WEIGHTS_FILE" }),
            ("VAE_MODEL", new[] { "config.json", "diffusion_pytorch_model.safetensors" }) })
        {
            var entry = DiTServer.Api.Cli.ModelsCommand.Catalog.SingleOrDefault(e => e.Name == config[modelKey]);
            if (entry is null) { problems.Add($"{modelKey} {config[modelKey]} is not in the models pull catalogue"); continue; }
            if (!script.Contains($"models pull \"${modelKey}\"")) problems.Add($"the init container does not pull ${modelKey}");
            foreach (var file in files)
            {
                var name = file.StartsWith('$') ? config[file[1..]] : file;
                if (!entry.Files.Contains(name)) problems.Add($"{entry.Name} has no file {name}");
                if (!script.Contains($"--sha256 \"{file}=")) problems.Add($"no --sha256 for {name}");
            }
        }
        var settings = Settings(o);
        var model = (string?)settings["DiT"]?["Model"];
        var folder = DiTServer.Api.Cli.ModelsCommand.Catalog.Single(e => e.Name == config["DIT_MODEL"]).Folder;
        if (model != $"/models/{folder}") problems.Add($"DiT:Model {model} is not the pulled folder /models/{folder}");
        return problems;
    }

    /// <summary>The port in the Dockerfile's ASPNETCORE_URLS.</summary>
    public static int DockerfilePort()
    {
        var text = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "deploy", "Dockerfile"));
        var m = Regex.Match(text, @"ASPNETCORE_(?:URLS=http://\+:|HTTP_PORTS=)(\d+)");
        Assert.True(m.Success, "the Dockerfile sets no ASPNETCORE_URLS / ASPNETCORE_HTTP_PORTS port");
        return int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
