using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace DiTServer.Bench.Evidence;

/// <summary>This same program started as the HTTP server in a child process on 127.0.0.1 (a free port), for the
/// evidence benchmarks: its RSS is read from /proc, its worker's live tensors from <c>/metrics</c>.</summary>
public sealed class ChildServer : IAsyncDisposable
{
    private readonly Process process;
    private readonly Stopwatch sinceSignal = new();

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
    private const int SIGTERM = 15;

    private ChildServer(Process process, Uri address, string log)
    {
        this.process = process;
        Address = address;
        LogPath = log;
        Client = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromMinutes(10) };
    }

    public Uri Address { get; }
    public HttpClient Client { get; }
    public string LogPath { get; }
    public int Pid => process.Id;

    /// <summary>Starts the server on <paramref name="model"/> with extra configuration (environment keys such as
    /// <c>Serving__QueueCapacity</c>) and waits until <c>/health/ready</c> answers 200.</summary>
    public static async Task<ChildServer> StartAsync(string model, IReadOnlyDictionary<string, string> settings, TimeSpan startTimeout)
    {
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; }
        // The server's apphost when this process is the server; otherwise `dotnet DiTServer.Api.dll` beside this
        // program (the bench program and the test host both reference the server, so its dll is in their folders).
        var dll = typeof(global::Program).Assembly.Location;
        var self = Environment.ProcessPath;
        var name = self is null ? null : Path.GetFileNameWithoutExtension(self);
        var exe = name == Path.GetFileNameWithoutExtension(dll) || name == "dotnet"
            ? self!
            : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        var info = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (name != Path.GetFileNameWithoutExtension(dll)) info.ArgumentList.Add(dll);
        info.Environment["DiT__Model"] = Path.GetFullPath(model);
        info.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        info.Environment["Serilog__MinimumLevel__Default"] = "Warning"; // the per-request lines would cost more than the tiny model
        foreach (var (k, v) in settings) info.Environment[k] = v;
        var log = Path.Combine(Path.GetTempPath(), $"ditserver-child-{port}.log");
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {exe}");
        var writer = new StreamWriter(log) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new ChildServer(process, new Uri($"http://127.0.0.1:{port}"), log);
        var deadline = DateTime.UtcNow + startTimeout;
        while (true)
        {
            if (process.HasExited) throw new InvalidOperationException($"the server exited with {process.ExitCode} at start; see {log}");
            try { if ((await server.Client.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK) return server; }
            catch (HttpRequestException) { }
            if (DateTime.UtcNow > deadline)
            {
                await server.DisposeAsync();
                throw new TimeoutException($"the server was not ready within {startTimeout}; see {log}");
            }
            await Task.Delay(200);
        }
    }

    /// <summary>Resident set size of the server process in bytes (VmRSS).</summary>
    public long Rss()
    {
        foreach (var line in File.ReadLines($"/proc/{process.Id}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }

    /// <summary>A gauge or counter without labels from <c>/metrics</c>.</summary>
    /// <summary>A metric summed over its series (every label set, e.g. one per device); NaN when absent.</summary>
    public async Task<double> Metric(string name)
    {
        var text = await Client.GetStringAsync("/metrics");
        double sum = 0;
        bool found = false;
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith(name + " ", StringComparison.Ordinal) && !line.StartsWith(name + "{", StringComparison.Ordinal)) continue;
            sum += double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            found = true;
        }
        return found ? sum : double.NaN;
    }

    /// <summary>Sends SIGTERM (what a container runtime sends on stop) and returns at once.</summary>
    public void SendSigterm()
    {
        sinceSignal.Restart();
        if (kill(process.Id, SIGTERM) != 0) throw new InvalidOperationException($"kill({process.Id}, SIGTERM) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Waits up to <paramref name="timeout"/> for the exit (killing the process after that); returns the exit code
    /// (-1 when it had to be killed) and the time since <see cref="SendSigterm"/>.</summary>
    public async Task<(int ExitCode, TimeSpan Took)> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try { await process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { process.Kill(true); await process.WaitForExitAsync(); return (-1, sinceSignal.Elapsed); }
        return (process.ExitCode, sinceSignal.Elapsed);
    }

    /// <summary>SIGTERM, then waits up to <paramref name="timeout"/> for the exit; returns the exit code and the time it took.</summary>
    public Task<(int ExitCode, TimeSpan Took)> TerminateAsync(TimeSpan timeout)
    {
        SendSigterm();
        return WaitForExitAsync(timeout);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        if (!process.HasExited) await TerminateAsync(TimeSpan.FromSeconds(30));
        process.Dispose();
    }
}
