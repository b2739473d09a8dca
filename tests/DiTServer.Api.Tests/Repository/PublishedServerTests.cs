using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace DiTServer.Api.Tests;

/// <summary>Runs only in CI (CI=true) or when DIT_PUBLISH_TEST=1: it publishes the whole server (~15 s and ~0.5 GB).</summary>
public sealed class PublishFactAttribute : FactAttribute
{
    public PublishFactAttribute()
    {
        if (Environment.GetEnvironmentVariable("CI") != "true" && Environment.GetEnvironmentVariable("DIT_PUBLISH_TEST") != "1")
            Skip = "publishes the server (slow, ~0.5 GB): runs in CI (CI=true) or with DIT_PUBLISH_TEST=1";
    }
}

/// <summary>What the Docker image ships, checked without Docker: <c>deploy/publish.sh</c> (the Dockerfile's publish
/// step), then the published DiTServer.Api.dll on the tiny model must pass /health/ready, serve the playground and
/// generate one PNG, and stop cleanly on SIGTERM.</summary>
public sealed class PublishedServerTests
{
    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
    private const int SIGTERM = 15;

    [PublishFact]
    public async Task Published_output_of_deploy_publish_sh_starts_is_ready_generates_a_png_and_stops_on_sigterm()
    {
        var root = RepositoryPaths.Root;
        var output = Directory.CreateTempSubdirectory("dit-publish-").FullName;
        try
        {
            var (code, log) = await Run("bash", ["deploy/publish.sh", output, "cpu"], root, TimeSpan.FromMinutes(8));
            Assert.True(code == 0, $"deploy/publish.sh failed ({code}):\n{Tail(log)}");
            var dll = Path.Combine(output, "DiTServer.Api.dll");
            Assert.True(File.Exists(dll), $"{dll} was not published");
            Assert.True(File.Exists(Path.Combine(output, "wwwroot", "index.html")), "the playground (wwwroot) was not published");

            int port = FreePort();
            var start = new ProcessStartInfo("dotnet") { WorkingDirectory = output, RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add(dll);
            start.Environment["DiT__Model"] = TestPaths.TinyModel;
            start.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
            start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            var serverLog = new StringBuilder();
            using var server = Process.Start(start)!;
            server.OutputDataReceived += (_, e) => { lock (serverLog) serverLog.AppendLine(e.Data); };
            server.ErrorDataReceived += (_, e) => { lock (serverLog) serverLog.AppendLine(e.Data); };
            server.BeginOutputReadLine();
            server.BeginErrorReadLine();
            string Log() { lock (serverLog) return Tail(serverLog.ToString()); }
            try
            {
                using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
                var deadline = DateTime.UtcNow.AddSeconds(60);
                while (true)
                {
                    Assert.False(server.HasExited, $"the published server exited with {(server.HasExited ? server.ExitCode : 0)}:\n{Log()}");
                    try
                    {
                        if ((await client.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK) break;
                    }
                    catch (HttpRequestException) { } // not listening yet
                    Assert.True(DateTime.UtcNow < deadline, $"/health/ready did not answer 200 within 60 s:\n{Log()}");
                    await Task.Delay(250);
                }

                var png = await client.PostAsync("/v1/images",
                    new StringContent("""{"class_label": 1, "steps": 4, "seed": 1}""", Encoding.UTF8, "application/json"));
                var bytes = await png.Content.ReadAsByteArrayAsync();
                Assert.True(png.StatusCode == HttpStatusCode.OK, $"POST /v1/images: {png.StatusCode} {Encoding.UTF8.GetString(bytes)}\n{Log()}");
                Assert.Equal("image/png", png.Content.Headers.ContentType?.MediaType);
                Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
                Assert.Contains("DiTServer playground", await client.GetStringAsync("/"));
            }
            finally
            {
                if (!server.HasExited) Assert.Equal(0, kill(server.Id, SIGTERM));
                using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                try { await server.WaitForExitAsync(stop.Token); }
                catch (OperationCanceledException) { server.Kill(entireProcessTree: true); }
            }
            Assert.True(server.ExitCode == 0, $"the server's exit code after SIGTERM was {server.ExitCode}:\n{Log()}");
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    private static async Task<(int Code, string Log)> Run(string file, string[] args, string folder, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1"; // leave no build servers behind the test
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try { await process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout}\n{await stdout}{await stderr}");
        }
        return (process.ExitCode, await stdout + await stderr);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string Tail(string log, int lines = 40) => string.Join('\n', log.Split('\n').TakeLast(lines));
}
