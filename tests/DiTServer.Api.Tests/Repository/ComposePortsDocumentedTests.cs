using System.Text.RegularExpressions;

namespace DiTServer.Api.Tests;

/// <summary>Every host port that deploy/docker-compose.yml publishes is named in docs/clients.md's Compose section:
/// before, the CPU profile's 8081 was documented nowhere, and whoever started it looked for the server on 8080.</summary>
public sealed partial class ComposePortsDocumentedTests
{
    [Fact]
    public void Each_published_host_port_is_documented_with_the_compose_commands()
    {
        var compose = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "deploy", "docker-compose.yml"));
        var ports = PublishedPort().Matches(compose).Select(m => m.Groups[1].Value).Distinct().ToList();
        Assert.Contains("8081", ports);
        var docs = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "docs", "clients.md"));
        int section = docs.IndexOf("## Compose and Docker", StringComparison.Ordinal);
        Assert.True(section >= 0, "docs/clients.md has no Compose section");
        var text = docs[section..];
        foreach (var port in ports)
            Assert.True(text.Contains($"**{port}**", StringComparison.Ordinal) || text.Contains($":{port}", StringComparison.Ordinal),
                $"host port {port} of deploy/docker-compose.yml is not named in docs/clients.md's Compose section");
    }

    [GeneratedRegex("""-\s*"(\d+):\d+"\s*$""", RegexOptions.Multiline)]
    private static partial Regex PublishedPort();
}
