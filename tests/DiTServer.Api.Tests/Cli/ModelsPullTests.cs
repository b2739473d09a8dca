using System.Security.Cryptography;
using DiTServer.Api.Cli;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace DiTServer.Api.Tests;

/// <summary>`models pull` against a local HTTP server on 127.0.0.1: a good file, a corrupt one, and a connection that
/// drops halfway (resumed with a Range request).</summary>
public class ModelsPullTests : IAsyncLifetime
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-pull-").FullName;
    private readonly byte[] weights = RandomNumberGenerator.GetBytes(300_000);
    private WebApplication? server;
    private string baseUrl = "";
    private int flakyRequests, rangeRequests;

    private string Sha => Convert.ToHexStringLower(SHA256.HashData(weights));

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        server = builder.Build();
        server.MapGet("/good/{file}", (string file) => Results.Bytes(weights, "application/octet-stream", enableRangeProcessing: true));
        server.MapGet("/corrupt/{file}", (string file) =>
        {
            var bad = (byte[])weights.Clone();
            bad[12345] ^= 0xFF;
            return Results.Bytes(bad, "application/octet-stream", enableRangeProcessing: true);
        });
        server.MapGet("/flaky/{file}", async (HttpContext context) =>
        {
            if (context.Request.Headers.Range.Count > 0) Interlocked.Increment(ref rangeRequests);
            if (Interlocked.Increment(ref flakyRequests) == 1)
            {
                // First attempt: announce the whole file, send half, then drop the connection.
                context.Response.ContentLength = weights.Length;
                await context.Response.Body.WriteAsync(weights.AsMemory(0, weights.Length / 2));
                await context.Response.Body.FlushAsync();
                context.Abort();
                return;
            }
            await Results.Bytes(weights, "application/octet-stream", enableRangeProcessing: true).ExecuteAsync(context);
        });
        await server.StartAsync();
        baseUrl = server.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
    }

    public async Task DisposeAsync()
    {
        if (server is not null) await server.DisposeAsync();
        Directory.Delete(root, true);
    }

    private async Task<(int Code, string Out, string Err)> Pull(string path, params string[] extra)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync(["models", "pull", "DiT-XL/2-256", "--out", root, "--base-url", $"{baseUrl}/{path}", "--retry-delay", "0.05",
            .. extra], stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private string Target => Path.Combine(root, "dit-xl-2-256", "DiT-XL-2-256x256.pt");

    [Fact]
    public async Task Good_file_is_verified_and_a_ready_manifest_written()
    {
        var (code, stdout, stderr) = await Pull("good", "--sha256", $"DiT-XL-2-256x256.pt={Sha}");
        Assert.True(code == 0, stderr);
        Assert.Equal(weights, File.ReadAllBytes(Target));
        Assert.Contains("verified", stdout);
        Assert.Contains("(100%)", stderr);
        var manifest = File.ReadAllText(Path.Combine(root, "dit-xl-2-256", "model.json"));
        Assert.Contains("\"architecture\": \"DiT-XL/2\"", manifest);
        Assert.Contains("\"weights\": \"DiT-XL-2-256x256.pt\"", manifest);
        Assert.False(File.Exists(Target + ".partial"));
    }

    [Fact]
    public async Task Corrupt_file_fails_loudly_and_is_deleted()
    {
        var (code, _, stderr) = await Pull("corrupt", "--sha256", $"DiT-XL-2-256x256.pt={Sha}");
        Assert.NotEqual(0, code);
        Assert.Contains("SHA-256 mismatch", stderr);
        Assert.Contains(Sha, stderr);
        Assert.False(File.Exists(Target));
        Assert.False(File.Exists(Target + ".partial"));
    }

    [Fact]
    public async Task Dropped_connection_is_resumed_with_a_range_request()
    {
        var (code, _, stderr) = await Pull("flaky", "--sha256", $"DiT-XL-2-256x256.pt={Sha}");
        Assert.True(code == 0, stderr);
        Assert.Equal(weights, File.ReadAllBytes(Target));
        Assert.Equal(2, flakyRequests);
        Assert.Equal(1, rangeRequests);
    }

    [Fact]
    public async Task A_failed_pull_leaves_no_empty_folder_but_keeps_a_partial_file_to_resume()
    {
        // A 404: nothing was written, so the model folder this pull created goes again.
        var (code, _, stderr) = await Pull("missing", "--sha256", $"DiT-XL-2-256x256.pt={Sha}", "--attempts", "1");
        Assert.NotEqual(0, code);
        Assert.Contains("404", stderr);
        Assert.False(Directory.Exists(Path.Combine(root, "dit-xl-2-256")), "an empty model folder was left behind");

        // The connection drops halfway and no retry is allowed: the half file stays for the next pull to resume.
        (code, _, stderr) = await Pull("flaky", "--sha256", $"DiT-XL-2-256x256.pt={Sha}", "--attempts", "1");
        Assert.NotEqual(0, code);
        Assert.True(File.Exists(Target + ".partial"), stderr);
        (code, _, stderr) = await Pull("flaky", "--sha256", $"DiT-XL-2-256x256.pt={Sha}", "--attempts", "1");
        Assert.True(code == 0, stderr);
        Assert.Equal(weights, File.ReadAllBytes(Target));
        Assert.Equal(1, rangeRequests);
    }

    [Theory]
    [InlineData(new[] { "models", "pull", "DiT-XL/2-256" }, "no SHA-256 for DiT-XL-2-256x256.pt")]
    [InlineData(new[] { "models", "pull", "DiT-XL/3-256", "--sha256", "x=1" }, "unknown model")]
    [InlineData(new[] { "models", "pull", "DiT-XL/2-256", "--sha256", "DiT-XL-2-256x256.pt=abc" }, "64 hex digits")]
    [InlineData(new[] { "models", "pull", "sd-vae-ft-ema", "--sha256", "config.json=0000000000000000000000000000000000000000000000000000000000000000" },
        "no SHA-256 for diffusion_pytorch_model.safetensors")]
    public async Task Bad_arguments_exit_2_without_downloading(string[] args, string expected)
    {
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync([.. args, "--out", root], new StringWriter(), stderr);
        Assert.Equal(2, code);
        Assert.Contains(expected, stderr.ToString());
        Assert.Empty(Directory.EnumerateFileSystemEntries(root));
    }
}
