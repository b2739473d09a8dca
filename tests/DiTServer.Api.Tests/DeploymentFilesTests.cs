using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace DiTServer.Api.Tests;

/// <summary>Docker is not installed on CI machines, so the compose file and Dockerfile are checked structurally.</summary>
public class DeploymentFilesTests
{
    private static string Deploy(string file) => Path.Combine(RepoRoot(), "deploy", file);

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "DiTServer.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("repository root (DiTServer.sln) not found");
    }

    private static Dictionary<object, object> Compose()
    {
        using var reader = new StreamReader(Deploy("docker-compose.yml"));
        // MergingParser resolves the "<<: *common" merge keys the way docker compose does.
        return new DeserializerBuilder().Build().Deserialize<Dictionary<object, object>>(new MergingParser(new Parser(reader)));
    }

    private static Dictionary<object, object> Map(object o, string key) => (Dictionary<object, object>)((Dictionary<object, object>)o)[key];

    [Fact]
    public void Gpu_service_reserves_an_nvidia_gpu_mounts_models_and_checks_readiness()
    {
        var gpu = Map(Compose(), "services")["ditserver"];
        var devices = (List<object>)Map(Map(Map(gpu, "deploy"), "resources"), "reservations")["devices"];
        var device = (Dictionary<object, object>)devices.Single();
        Assert.Equal("nvidia", device["driver"]);
        Assert.Contains("gpu", ((List<object>)device["capabilities"]).Cast<string>());
        Assert.Equal("cuda", Map(Map(gpu, "build"), "args")["TORCH_BACKEND"]);
        Assert.Contains(((List<object>)((Dictionary<object, object>)gpu)["volumes"]).Cast<string>(), v => v.EndsWith(":/models:ro"));
        var env = Map(gpu, "environment");
        Assert.True(env.ContainsKey("DiT__Model") && env.ContainsKey("Admin__ApiKeySha256"));
        var test = (List<object>)Map(gpu, "healthcheck")["test"];
        Assert.Contains(test.Cast<string>(), s => s.EndsWith("/health/ready"));
        Assert.Contains(((List<object>)((Dictionary<object, object>)gpu)["ports"]).Cast<string>(), p => p.EndsWith(":8080"));
    }

    [Fact]
    public void Both_server_services_give_the_graceful_shutdown_more_time_than_the_hosts_shutdown_timeout()
    {
        var services = Map(Compose(), "services");
        foreach (var name in new[] { "ditserver", "ditserver-cpu" })
        {
            var grace = (string)((Dictionary<object, object>)services[name])["stop_grace_period"];
            Assert.EndsWith("s", grace);
            // The server needs up to the host's 30 s (appsettings: DrainTimeout 25 s before it); docker's default is 10 s.
            Assert.True(int.Parse(grace.TrimEnd('s'), System.Globalization.CultureInfo.InvariantCulture) > 30, $"{name}: stop_grace_period {grace}");
        }
    }

    [Fact]
    public void Cpu_and_prometheus_services_sit_behind_profiles()
    {
        var services = Map(Compose(), "services");
        var cpu = (Dictionary<object, object>)services["ditserver-cpu"];
        Assert.Contains("cpu", ((List<object>)cpu["profiles"]).Cast<string>());
        Assert.Equal("cpu", Map(Map(cpu, "build"), "args")["TORCH_BACKEND"]);
        Assert.False(cpu.ContainsKey("deploy"));
        Assert.Contains("monitoring", ((List<object>)((Dictionary<object, object>)services["prometheus"])["profiles"]).Cast<string>());
        Assert.Contains("/metrics", File.ReadAllText(Deploy("prometheus.yml")));
    }

    [Fact]
    public void Dockerfile_publishes_with_the_shared_script_runs_as_non_root_and_has_a_healthcheck()
    {
        var lines = File.ReadAllLines(Deploy("Dockerfile")).Select(l => l.Trim()).ToList();
        Assert.Contains(lines, l => l.StartsWith("FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build"));
        Assert.Contains(lines, l => l.StartsWith("FROM mcr.microsoft.com/dotnet/aspnet:10.0"));
        Assert.Contains(lines, l => l == "ARG TORCH_BACKEND=cpu");
        Assert.Contains(lines, l => l.StartsWith("RUN bash deploy/publish.sh /app \"$TORCH_BACKEND\""));
        Assert.Contains(lines, l => l == "USER app");
        Assert.Contains(lines, l => l.StartsWith("HEALTHCHECK"));
        Assert.Contains(lines, l => l.Contains("/health/ready"));
        Assert.Contains(lines, l => l.StartsWith("VOLUME") && l.Contains("/models"));
        Assert.Contains("dotnet publish", File.ReadAllText(Deploy("publish.sh")));
    }
}
