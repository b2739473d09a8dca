using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using DiTServer.Core.Serving;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace DiTServer.Api.Tests.Kubernetes;

/// <summary>The Kubernetes manifests (deploy/kubernetes) validated without a cluster: every overlay renders with kustomize,
/// every object loads strictly (the official client for built-in kinds, the KEDA and Prometheus Operator CRD schemas for
/// the rest), and probes, ports, grace period, autoscaling metric and settings agree with the server. Each check is also
/// shown to fail on a drifted copy.</summary>
public sealed class KubernetesManifestTests(KubernetesManifestTests.Server server, Xunit.Abstractions.ITestOutputHelper output)
    : IClassFixture<KubernetesManifestTests.Server>
{
    /// <summary>One warmed-up server on the tiny model: the source of the facts the manifests must agree with.</summary>
    public sealed class Server : IAsyncLifetime
    {
        public ServerFactory Factory { get; } = new();
        public ServerFacts Facts { get; private set; } = null!;

        public async Task InitializeAsync()
        {
            var client = Factory.CreateClient();
            await Factory.WaitFor(s => s.Ready, "warm-up");
            var metrics = await client.GetStringAsync("/metrics");
            // Each metric's label names, from its samples (a family with no sample yet has none).
            var exported = Regex.Matches(metrics, @"^# TYPE (\S+) ", RegexOptions.Multiline).Select(m => m.Groups[1].Value)
                .ToDictionary(name => name,
                    name => (IReadOnlySet<string>)Regex.Matches(metrics, "^" + Regex.Escape(name) + @"\{([^}]*)\}", RegexOptions.Multiline)
                    .SelectMany(s => Regex.Matches(s.Groups[1].Value, @"(\w+)=""").Select(l => l.Groups[1].Value)).ToHashSet());
            var appSettings = JsonNode.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.Root, "src", "DiTServer.Api", "appsettings.json")))!.AsObject();
            Facts = new ServerFacts(async path => (await client.GetAsync(path)).StatusCode, exported,
                Factory.Services.GetRequiredService<IOptions<HostOptions>>().Value.ShutdownTimeout, ManifestChecks.DockerfilePort(), appSettings);
        }

        public Task DisposeAsync()
        {
            Factory.Dispose();
            return Task.CompletedTask;
        }
    }

    private ServerFacts Facts => server.Facts;

    public static TheoryData<string> Overlays => new(Manifests.Overlays);

    [Theory]
    [MemberData(nameof(Overlays))]
    public void Every_overlay_renders_and_every_object_loads_strictly(string overlay)
    {
        var objects = Manifests.Load(overlay);
        var kinds = objects.Select(o => o.Kind).ToHashSet();
        foreach (var kind in new[] { "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "ConfigMap", "Ingress" })
            Assert.Contains(kind, kinds);
        Assert.Equal(overlay == "gpu-hpa", kinds.Contains("HorizontalPodAutoscaler"));
        Assert.Equal(overlay != "gpu-hpa", kinds.Contains("ScaledObject"));
        Assert.Equal(overlay == "gpu-shared", ManifestChecks.SharesJobs(objects));
    }

    [Theory]
    [MemberData(nameof(Overlays))]
    public async Task Probes_ports_grace_period_autoscaling_and_settings_agree_with_the_server(string overlay)
    {
        var objects = Manifests.Load(overlay);
        var problems = (await ManifestChecks.Probes(objects, Facts))
            .Concat(ManifestChecks.GracePeriod(objects, Facts))
            .Concat(ManifestChecks.Autoscaling(objects, Facts))
            .Concat(ManifestChecks.SettingsKeys(objects, Facts))
            .Concat(ManifestChecks.Shape(objects, gpu: overlay != "cpu"))
            .Concat(overlay == "cpu" ? [] : ManifestChecks.ModelsPull(objects))
            .ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void The_autoscaling_targets_of_keda_and_the_hpa_are_the_same()
    {
        static double Keda(string overlay) => double.Parse((string)Manifests.Load(overlay).Single(o => o.Kind == "ScaledObject")
            .Json["spec"]!["triggers"]![0]!["metadata"]!["threshold"]!, CultureInfo.InvariantCulture);
        var hpa = Manifests.Get<k8s.Models.V2HorizontalPodAutoscaler>(Manifests.Load("gpu-hpa"), "HorizontalPodAutoscaler");
        Assert.Equal(Keda("gpu"), hpa.Spec.Metrics.Single().Pods.Target.AverageValue.ToDouble());
    }

    /// <summary>The CPU overlay's settings, applied to a real server (its DiT section included: the demo model on the CPU),
    /// bind, validate and reach ready.</summary>
    [Fact]
    public async Task The_cpu_overlays_settings_start_a_server_that_gets_ready()
    {
        var settings = ManifestChecks.Settings(Manifests.Load("cpu"));
        var pairs = new List<(string, string)>();
        void Flatten(JsonNode? node, string prefix)
        {
            switch (node)
            {
                case JsonObject o: foreach (var (k, v) in o) Flatten(v, prefix == "" ? k : $"{prefix}:{k}"); break;
                case JsonArray a: for (int i = 0; i < a.Count; i++) Flatten(a[i], $"{prefix}:{i}"); break;
                default: pairs.Add((prefix, node?.ToString() ?? "")); break;
            }
        }
        Flatten(settings, "");
        Assert.Contains(pairs, p => p.Item1 == "DiT:Model" && p.Item2 == ""); // the demo model; ServerFactory's tiny model is replaced
        using var factory = new ServerFactory([.. pairs]);
        var client = factory.CreateClient();
        await factory.WaitFor(s => s.Ready, "warm-up", 60);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(ManifestChecks.ReadyPath)).StatusCode);
        var serving = factory.Services.GetRequiredService<IOptions<ServingOptions>>().Value;
        Assert.Equal((int)settings["Serving"]!["QueueCapacity"]!, serving.QueueCapacity);
        Assert.Equal(TimeSpan.Parse((string)settings["Serving"]!["DrainTimeout"]!, CultureInfo.InvariantCulture), serving.DrainTimeout);
        Assert.Contains("Fashion", await client.GetStringAsync("/v1/models"), StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The install example of deploy/kubernetes/README.md (an overlay of the user's own) renders, loads strictly
    /// and changes what it says it changes.</summary>
    [Fact]
    public void The_readme_install_overlay_renders_with_the_users_image_checksums_and_host()
    {
        var readme = File.ReadAllLines(Path.Combine(Manifests.Folder, "README.md"));
        int start = Array.FindIndex(readme, l => l.StartsWith("mkdir -p my-dit && cat > my-dit/kustomization.yaml <<'EOF'", StringComparison.Ordinal));
        Assert.True(start >= 0, "the README's install example is gone");
        var kustomization = readme.Skip(start + 1).TakeWhile(l => l != "EOF").ToList();
        // The example sits beside deploy/ at the repository root, as in the README.
        var folder = Path.Combine(RepositoryPaths.Root, $"my-dit-test-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            File.WriteAllLines(Path.Combine(folder, "kustomization.yaml"), kustomization);
            var objects = Manifests.Parse(Manifests.RenderFolder(folder));
            Assert.All(objects, o => Assert.Equal("dit", (string?)o.Json["metadata"]!["namespace"]));
            var d = ManifestChecks.Deployment(objects);
            Assert.All(d.Spec.Template.Spec.Containers.Concat(d.Spec.Template.Spec.InitContainers),
                c => Assert.Equal("registry.example.com/ditserver:cuda", c.Image));
            var models = Manifests.Get<k8s.Models.V1ConfigMap>(objects, "ConfigMap", "ditserver-models").Data;
            Assert.StartsWith("<sha256 of", models["DIT_WEIGHTS_SHA256"]);
            Assert.Equal("DiT-XL/2-256", models["DIT_MODEL"]); // merged, not replaced
            Assert.Equal("dit.mycompany.com", Manifests.Get<k8s.Models.V1Ingress>(objects, "Ingress").Spec.Rules.Single().Host);
        }
        finally { Directory.Delete(folder, recursive: true); }
    }

    /// <summary>Drift in any one place is caught: a field the API server would refuse, a schema violation of the KEDA CRD,
    /// or a disagreement with the server.</summary>
    [Theory]
    [InlineData("\n  replicas: 1\n", "\n  replica: 1\n", "unknown field in the Deployment")]
    [InlineData("\n  replicas: 1\n", "\n  replicas: one\n", "wrong type in the Deployment")]
    [InlineData("  maxUnavailable: 1\n", "  maxUnavailables: 1\n", "unknown field in the PDB")]
    [InlineData("  pollingInterval: 15\n", "  pollingIntervall: 15\n", "unknown field in the ScaledObject")]
    [InlineData("threshold: \"6\"", "threshold: 6", "KEDA metadata values are strings")]
    [InlineData("  minReplicaCount: 1\n", "  minReplicaCount: 9\n", "the CRD's rule min ≤ max")]
    [InlineData("  pollingInterval: 15\n", "  pollingInterval: fast\n", "wrong type in the ScaledObject")]
    [InlineData("- interval: 15s\n", "- intervall: 15s\n", "unknown field in the ServiceMonitor")]
    [InlineData("  name: ditserver\nspec:\n  maxUnavailable", "  name: ditserver\n  nam: x\nspec:\n  maxUnavailable", "unknown metadata field")]
    public void Strict_loading_refuses_a_drifted_object(string from, string to, string why)
    {
        var rendered = Manifests.Render("gpu");
        Assert.True(rendered.Contains(from), $"the mutation's anchor is gone ({why}): {from}");
        var e = Assert.ThrowsAny<Exception>(() => Manifests.Parse(ReplaceOnce(rendered, from, to)));
        output.WriteLine($"{why}: {e.GetType().Name}: {e.Message} {e.InnerException?.Message}");
        // Only the two refusals count: the strict YAML loader's (unknown field, wrong type) and the CRD check's. Any
        // other exception (a NullReferenceException in the checks, a kubectl failure) is a bug, not a caught drift.
        Assert.True(e is YamlDotNet.Core.YamlException or InvalidDataException,
            $"{why}: expected a YAML or schema refusal, got {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
    }

    [Theory]
    [InlineData("path: /health/ready", "path: /healthz", "probes")]
    [InlineData("path: /health/live", "path: /health/ready/live", "probes")]
    [InlineData("containerPort: 8080", "containerPort: 8081", "probes")]
    [InlineData("terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "grace")]
    [InlineData("DrainTimeout\": \"00:00:25\"", "DrainTimeout\": \"00:00:40\"", "grace")]
    [InlineData("- \"5\"", "- \"20\"", "grace")]
    [InlineData("dit_queue_depth{service", "dit_queue_length{service", "autoscaling")]
    [InlineData("sum(avg_over_time(dit_queue_depth{service=\"ditserver\"}[1m])) + sum(avg_over_time(dit_active_requests",
        "sum(avg_over_time(dit_queue_depth{service=\"ditserver\"}[1m]) + avg_over_time(dit_active_requests", "autoscaling")]
    [InlineData("threshold: \"6\"", "threshold: \"64\"", "autoscaling")]
    [InlineData("\"QueueCapacity\": 64", "\"QueueCapacity\": 4", "autoscaling")]
    [InlineData("\"DrainTimeout\"", "\"DrainTime\"", "settings")]
    [InlineData("nvidia.com/gpu: 1", "nvidia.com/gpu: 0", "shape")]
    [InlineData("\"Device\": \"cuda\"", "\"Devices\": [\"cuda:0\", \"cuda:1\"]", "shape")]
    [InlineData("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "shape")]
    [InlineData("targetPort: http", "targetPort: 9090", "shape")]
    [InlineData("sessionAffinity: ClientIP", "sessionAffinity: None", "shape")]
    [InlineData("affinity: cookie", "affinity: none", "shape")]
    [InlineData("DIT_WEIGHTS_FILE: DiT-XL-2-256x256.pt", "DIT_WEIGHTS_FILE: DiT-XL-2-512x512.pt", "models")]
    [InlineData("\"$VAE_MODEL\" --out /models", "\"$VAE_MODEL\" --out /weights", "models", "gpu-pvc")]
    [InlineData("[ -f /models/.complete ]", "[ -f /models/.done ]", "models", "gpu-pvc")]
    [InlineData("claimName: ditserver-models\n          readOnly: true", "claimName: other-models\n          readOnly: true", "models", "gpu-pvc")]
    [InlineData("restartPolicy: OnFailure\n      securityContext:\n        fsGroup: 1654\n        runAsGroup: 1654\n        runAsNonRoot: true",
        "restartPolicy: OnFailure\n      securityContext:\n        fsGroup: 1654\n        runAsGroup: 1654\n        runAsNonRoot: false", "shape", "gpu-pvc")]
    public async Task A_disagreement_with_the_server_is_reported(string from, string to, string check, string overlay = "gpu")
    {
        var rendered = Manifests.Render(overlay);
        Assert.True(rendered.Contains(from), $"the mutation's anchor is gone: {from}");
        var objects = Manifests.Parse(ReplaceOnce(rendered, from, to));
        var problems = check switch
        {
            "probes" => await ManifestChecks.Probes(objects, Facts),
            "grace" => ManifestChecks.GracePeriod(objects, Facts),
            "autoscaling" => ManifestChecks.Autoscaling(objects, Facts),
            "settings" => ManifestChecks.SettingsKeys(objects, Facts),
            "shape" => ManifestChecks.Shape(objects, gpu: true),
            "models" => ManifestChecks.ModelsPull(objects),
            _ => throw new ArgumentException(check),
        };
        Assert.NotEmpty(problems);
        output.WriteLine(string.Join("\n", problems));
    }

    private static string ReplaceOnce(string text, string from, string to)
    {
        int i = text.IndexOf(from, StringComparison.Ordinal);
        return text[..i] + to + text[(i + from.Length)..];
    }
}
