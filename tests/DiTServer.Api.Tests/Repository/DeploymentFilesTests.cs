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
    public void Every_service_sits_behind_its_own_profile_so_monitoring_starts_no_gpu_server()
    {
        var services = Map(Compose(), "services");
        string[] Profiles(string name) => ((List<object>)((Dictionary<object, object>)services[name])["profiles"]).Cast<string>().ToArray();
        Assert.Equal(["gpu"], Profiles("ditserver"));
        Assert.Equal(["cpu"], Profiles("ditserver-cpu"));
        Assert.Equal(["monitoring"], Profiles("prometheus"));
        var cpu = (Dictionary<object, object>)services["ditserver-cpu"];
        Assert.Equal("cpu", Map(Map(cpu, "build"), "args")["TORCH_BACKEND"]);
        Assert.False(cpu.ContainsKey("deploy"));
    }

    [Fact]
    public void Prometheus_scrapes_whichever_server_runs_through_their_shared_alias()
    {
        // Before: static targets for both servers, so one was always down.
        var services = Map(Compose(), "services");
        foreach (var name in new[] { "ditserver", "ditserver-cpu" })
            Assert.Contains("dit", ((List<object>)Map(Map(services[name], "networks"), "default")["aliases"]).Cast<string>());
        var prometheus = new DeserializerBuilder().Build().Deserialize<Dictionary<object, object>>(File.ReadAllText(Deploy("prometheus.yml")));
        var job = (Dictionary<object, object>)((List<object>)prometheus["scrape_configs"]).Single();
        Assert.Equal("/metrics", job["metrics_path"]);
        Assert.False(job.ContainsKey("static_configs"));
        var sd = (Dictionary<object, object>)((List<object>)job["dns_sd_configs"]).Single();
        Assert.Equal(["dit"], ((List<object>)sd["names"]).Cast<string>());
        Assert.Equal("8080", sd["port"]);
    }

    [Fact]
    public void Compose_file_has_nothing_docker_compose_1_29_rejects()
    {
        var compose = Compose();
        Assert.False(compose.ContainsKey("name"), "top-level name: is Compose v2 only; Debian's docker-compose 1.29 rejects the file");
        Assert.Equal("3.9", compose["version"]); // 1.x needs a version to read `services:`; v2 ignores it
    }

    [DockerComposeFact]
    public async Task Installed_compose_accepts_the_file()
    {
        foreach (var (file, args) in DockerComposeFactAttribute.Installed())
        {
            var (code, output) = await Tool.Run(file, [.. args, "-f", Deploy("docker-compose.yml"), "config", "-q"]);
            Assert.True(code == 0, $"{file} {string.Join(' ', args)} config: exit {code}\n{output}");
        }
    }

    [PromtoolFact]
    public async Task Promtool_accepts_the_prometheus_config()
    {
        var (code, output) = await Promtool.Run(["check", "config", Deploy("prometheus.yml")]);
        Assert.True(code == 0, output);
    }

    [Fact]
    public void Dockerfile_publishes_with_the_shared_script_runs_as_non_root_and_has_a_healthcheck()
    {
        var lines = File.ReadAllLines(Deploy("Dockerfile")).Select(l => l.Trim()).ToList();
        Assert.Contains(lines, l => l.StartsWith("FROM mcr.microsoft.com/dotnet/sdk:10.0.") && l.EndsWith(" AS build"));
        Assert.Contains(lines, l => l.StartsWith("FROM mcr.microsoft.com/dotnet/aspnet:10.0."));
        Assert.Contains(lines, l => l == "ARG TORCH_BACKEND=cpu");
        Assert.Contains(lines, l => l.StartsWith("RUN bash deploy/publish.sh /app \"$TORCH_BACKEND\""));
        Assert.Contains(lines, l => l == "USER app");
        Assert.Contains(lines, l => l.StartsWith("HEALTHCHECK"));
        Assert.Contains(lines, l => l.Contains("/health/ready"));
        Assert.Contains(lines, l => l.StartsWith("VOLUME") && l.Contains("/models"));
        Assert.Contains("dotnet publish", File.ReadAllText(Deploy("publish.sh")));
    }

    /// <summary>hadolint is a binary download (not possible here), so its rules that matter for this file are checked
    /// here: pinned base images, no ADD, apt lists removed with --no-install-recommends in the install's own layer,
    /// JSON-form ENTRYPOINT, a non-root user last, no `cd` in RUN, and restore in a layer before the sources.</summary>
    [Fact]
    public void Dockerfile_passes_the_lint_rules()
    {
        var instructions = DockerInstructions(File.ReadAllText(Deploy("Dockerfile")));
        var failures = new List<string>();
        foreach (var (keyword, args) in instructions)
        {
            if (keyword == "FROM")
            {
                var image = args.Split(' ')[0];
                // DL3006/DL3007: a tag (or digest) that names one release, not "latest" or a floating "10.0".
                if (!System.Text.RegularExpressions.Regex.IsMatch(image, @"(:\d+\.\d+\.\d+[^ ]*|@sha256:[0-9a-f]{64})$"))
                    failures.Add($"FROM {image}: pin an exact release (x.y.z tag or digest)");
            }
            if (keyword == "ADD") failures.Add("ADD: use COPY (DL3020)");
            if (keyword == "RUN" && System.Text.RegularExpressions.Regex.IsMatch(args, @"(^|&&|;)\s*cd\s")) failures.Add("RUN cd: use WORKDIR (DL3003)");
            if (keyword == "RUN" && args.Contains("apt-get install"))
            {
                if (!args.Contains("--no-install-recommends")) failures.Add("apt-get install without --no-install-recommends (DL3015)");
                if (!args.Contains("apt-get update")) failures.Add("apt-get install without apt-get update in the same RUN (DL3009 family)");
                if (!args.Contains("rm -rf /var/lib/apt/lists/*")) failures.Add("apt lists not removed in the install's layer (DL3009)");
                if (!args.Contains("-y")) failures.Add("apt-get install without -y (DL3014)");
            }
            if (keyword is "ENTRYPOINT" or "CMD" && !args.TrimStart().StartsWith('[')) failures.Add($"{keyword} in shell form (DL3025)");
        }
        var users = instructions.Where(i => i.Keyword == "USER").ToList();
        if (users.Count == 0 || users[^1].Args.Trim() is "root" or "0") failures.Add("the last USER must not be root (DL3002)");
        // Restore before the sources: the first COPY of the build stage brings only project and Directory files.
        var copies = instructions.Where(i => i.Keyword == "COPY" && !i.Args.Contains("--from")).Select(i => i.Args).ToList();
        int all = copies.FindIndex(c => c.StartsWith(". ", StringComparison.Ordinal));
        int restore = instructions.FindIndex(i => i.Keyword == "RUN" && i.Args.Contains("dotnet restore"));
        if (all < 0 || restore < 0 || restore > instructions.FindIndex(i => i.Keyword == "COPY" && i.Args.StartsWith(". ", StringComparison.Ordinal)))
            failures.Add("dotnet restore must run in its own layer before COPY . .");
        if (copies.Take(Math.Max(0, all))
            .Any(c => c.Split(' ')[..^1].Any(f => !f.EndsWith(".csproj", StringComparison.Ordinal) && !f.StartsWith("Directory.", StringComparison.Ordinal))))
            failures.Add("the restore layer copies more than project and Directory.* files");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void Dockerignore_keeps_build_output_and_git_out_of_the_context()
    {
        var patterns = File.ReadAllLines(Path.Combine(RepoRoot(), ".dockerignore")).Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#')).ToHashSet();
        foreach (var required in new[] { ".git", "**/bin", "**/obj" }) Assert.Contains(required, patterns);
        // What the image needs must not be ignored.
        foreach (var needed in new[] { "src", "models", "deploy", "Directory.Build.props", "Directory.Packages.props", "Directory.Build.targets" })
            Assert.DoesNotContain(needed, patterns);
    }

    /// <summary>Dockerfile instructions with line continuations joined and comments dropped.</summary>
    private static List<(string Keyword, string Args)> DockerInstructions(string text)
    {
        var result = new List<(string, string)>();
        var current = new System.Text.StringBuilder();
        foreach (var raw in text.Replace("\r\n", "\n").Split('\n'))
        {
            var line = raw.Trim();
            if (line.StartsWith('#') || (line.Length == 0 && current.Length == 0)) continue;
            if (line.EndsWith('\\')) { current.Append(line[..^1]).Append(' '); continue; }
            current.Append(line);
            var full = current.ToString().Trim();
            current.Clear();
            if (full.Length == 0) continue;
            var space = full.IndexOf(' ');
            result.Add(space < 0 ? (full.ToUpperInvariant(), "") : (full[..space].ToUpperInvariant(), full[(space + 1)..].Trim()));
        }
        return result;
    }
}

/// <summary>Skips, saying why, when neither Debian's docker-compose nor the Compose v2 plugin is installed (.ci/run
/// installs docker-compose).</summary>
public sealed class DockerComposeFactAttribute : FactAttribute
{
    public DockerComposeFactAttribute()
    {
        if (!Installed().Any()) Skip = "no docker-compose: apt-get install -y docker-compose (.ci/run does)";
    }

    /// <summary>docker-compose (v1, Debian) and `docker compose` (v2), whichever are present.</summary>
    public static IEnumerable<(string File, string[] Args)> Installed()
    {
        if (File.Exists("/usr/bin/docker-compose")) yield return ("/usr/bin/docker-compose", []);
        foreach (var docker in new[] { "/usr/bin/docker", "/usr/local/bin/docker" })
            if (File.Exists(docker) && Tool.Run(docker, ["compose", "version"]).GetAwaiter().GetResult().Code == 0)
            {
                yield return (docker, ["compose"]);
                break;
            }
    }
}

internal static class Tool
{
    public static async Task<(int Code, string Output)> Run(string file, string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stdout + await stderr);
    }
}
