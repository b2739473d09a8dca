using System.Diagnostics;
using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace DiTServer.Api.Tests;

/// <summary>The official npm <c>openai</c> SDK (tools/openai-node, pinned) against a live server on loopback: models,
/// images.generate, images.edit with OpenAI's mask, images.createVariation and the error paths, as check.mjs reads them.
/// .ci/run installs the package (npm ci); without it the test is skipped, saying how to run it.</summary>
public sealed class OpenAINodeSdkTests
{
    [NodeSdkFact]
    public async Task The_npm_openai_SDK_generates_edits_varies_and_reads_errors()
    {
        // AllowedHosts makes `url` results absolute from the Host the SDK sends, as SDKs need.
        using var factory = new ServerFactory(("Serving:MaxBatchRows", "16"), ("AllowedHosts", "127.0.0.1"));
        factory.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        factory.StartServer();
        var address = factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        await factory.WaitFor(s => s.Ready, "warm-up");

        var start = new ProcessStartInfo("node", ["check.mjs", address])
        {
            WorkingDirectory = NodeSdkFactAttribute.Folder, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using var node = Process.Start(start)!;
        var stdout = node.StandardOutput.ReadToEndAsync();
        var stderr = node.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await node.WaitForExitAsync(timeout.Token);
        string output = await stdout + await stderr;
        Assert.True(node.ExitCode == 0, $"node check.mjs {address} exited {node.ExitCode}:\n{output}");
        Assert.Contains("ok   ", output);
        Assert.DoesNotContain("FAIL", output);
    }
}

/// <summary>Skips the test when node or the pinned npm <c>openai</c> package is missing (.ci/run installs it with
/// <c>npm ci</c> in tools/openai-node).</summary>
public sealed class NodeSdkFactAttribute : FactAttribute
{
    public static string Folder => Path.Combine(RepositoryPaths.Root, "tools", "openai-node");

    public NodeSdkFactAttribute()
    {
        if (!File.Exists(Path.Combine(Folder, "node_modules", "openai", "package.json")))
            Skip = "the npm openai SDK is not installed: (cd tools/openai-node && npm ci) installs it (.ci/run does)";
        else if (!(Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "node"))))
            Skip = "node is not on PATH: install Node.js (.ci/run checks for it)";
    }
}
