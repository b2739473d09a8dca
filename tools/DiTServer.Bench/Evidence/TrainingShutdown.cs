using System.Buffers.Binary;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using DiTServer.Api.Admin;
using DiTServer.Core.Training;

namespace DiTServer.Bench.Evidence;

/// <summary>SIGTERM to a child server while an admin training job fine-tunes the served model: the process must exit
/// with 0 within the host's shutdown timeout and leave a checkpoint that loads, at least at the step the job had reached,
/// so the run can be resumed. Before the fix the training thread was still inside libtorch when the runtime unloaded it
/// (exit 139, SIGSEGV) and no checkpoint was written.</summary>
public static class TrainingShutdown
{
    public const string AdminKeyValue = "faults-admin-key";

    public sealed record Report(long StepAtSignal, int ExitCode, TimeSpan ExitAfter, long? CheckpointStep, string? CheckpointError, string Log)
    {
        public bool Ok => ExitCode == 0 && CheckpointError is null && CheckpointStep >= StepAtSignal && StepAtSignal > 0;

        public string Summary() => string.Create(CultureInfo.InvariantCulture,
            $"step {StepAtSignal} at the signal; exit code {ExitCode} after {ExitAfter.TotalSeconds:F1} s; checkpoint " +
                $"{(CheckpointError is null ? $"at step {CheckpointStep}, loads" : $"unusable: {CheckpointError}")}");
    }

    /// <summary>The configuration a child server needs for the admin training API under <paramref name="root"/>
    /// (data/ and runs/), with a synthetic IDX dataset fitting the served model (<paramref name="side"/>² pixels, 1 channel).</summary>
    public static Dictionary<string, string> Settings(string root, int side, int classes)
    {
        string data = Path.Combine(root, "data"), runs = Path.Combine(root, "runs");
        WriteSyntheticIdx(Path.Combine(data, "noise"), count: 64, side, classes);
        Directory.CreateDirectory(runs);
        return new Dictionary<string, string>
        {
            ["Admin__ApiKeySha256"] = AdminKey.HashOf(AdminKeyValue),
            ["Training__DataRoot"] = data,
            ["Training__OutputRoot"] = runs,
        };
    }

    /// <summary>Starts a fine-tuning job of the served model (no periodic checkpoints: only the one written on cancel
    /// can be there), waits until it has taken <paramref name="minSteps"/> steps, sends SIGTERM and waits for the exit.</summary>
    public static async Task<Report> RunAsync(ChildServer server, string runsRoot, int minSteps, TimeSpan exitTimeout)
    {
        using var admin = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKeyValue);
        const string job = """{ "dataset": "noise", "output": "sigterm", "init_from": "served", "steps": 1000000, "batch_size": """ +
            """8, "checkpoint_every": 0, "log_every": 1 }""";
        var created = await admin.PostAsync("/v1/admin/training/jobs", new StringContent(job, Encoding.UTF8, "application/json"));
        var text = await created.Content.ReadAsStringAsync();
        if (!created.IsSuccessStatusCode) throw new InvalidOperationException($"the training job was refused: {(int)created.StatusCode} {text}");
        var id = JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;

        long step = 0;
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (step < minSteps)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the job took fewer than {minSteps} steps in 120 s");
            await Task.Delay(50);
            var status = JsonDocument.Parse(await admin.GetStringAsync($"/v1/admin/training/jobs/{id}")).RootElement;
            if (status.GetProperty("state").GetString() != "Running") throw new InvalidOperationException($"the job stopped before the signal: {status}");
            step = status.GetProperty("step").GetInt64();
        }
        var (exit, took) = await server.TerminateAsync(exitTimeout);

        string checkpoint = Path.Combine(runsRoot, "sigterm", TrainingSession.CheckpointFile);
        long? ckptStep = null;
        string? error = null;
        try
        {
            ckptStep = TrainingCheckpoint.ReadInfo(checkpoint).Step;
            var (_, model, ema) = TrainingCheckpoint.LoadModels(checkpoint);
            model.Dispose();
            ema.Dispose();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or JsonException)
        {
            error = e.Message;
        }
        var log = File.Exists(server.LogPath) ? string.Join('\n', File.ReadLines(server.LogPath).TakeLast(20)) : "";
        return new Report(step, exit, took, ckptStep, error, log);
    }

    /// <summary>On a server restarted with the same roots: the run is listed as Interrupted at the checkpoint's step, and
    /// resuming it through the API for <paramref name="moreSteps"/> more steps finishes it.</summary>
    /// <returns>What the list said (state, step), then the resumed job's final state and step.</returns>
    public static async Task<(string ListedState, long ListedStep, string FinalState, long FinalStep)> ResumeAfterRestartAsync(ChildServer server,
        int moreSteps)
    {
        using var admin = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKeyValue);
        var list = JsonDocument.Parse(await admin.GetStringAsync("/v1/admin/training/jobs")).RootElement;
        var run = list.EnumerateArray().FirstOrDefault(j => j.TryGetProperty("output", out var o) && o.GetString() == "sigterm");
        if (run.ValueKind != JsonValueKind.Object) return ("absent", 0, "absent", 0);
        string id = run.GetProperty("id").GetString()!, listed = run.GetProperty("state").GetString()!;
        long step = run.GetProperty("step").GetInt64();
        var resumed = await admin.PostAsync($"/v1/admin/training/jobs/{id}/resume",
            new StringContent($"{{\"steps\": {step + moreSteps}}}", Encoding.UTF8, "application/json"));
        if (!resumed.IsSuccessStatusCode) return (listed, step, $"resume refused: {(int)resumed.StatusCode} {await resumed.Content.ReadAsStringAsync()}", 0);
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            var status = JsonDocument.Parse(await admin.GetStringAsync($"/v1/admin/training/jobs/{id}")).RootElement;
            var state = status.GetProperty("state").GetString()!;
            if (state != "Running" || DateTime.UtcNow > deadline) return (listed, step, state, status.GetProperty("step").GetInt64());
            await Task.Delay(100);
        }
    }

    /// <summary>A gzipped IDX pair (MNIST layout) of random pixels; enough to take training steps, nothing to learn.</summary>
    public static void WriteSyntheticIdx(string folder, int count, int side, int classes)
    {
        Directory.CreateDirectory(folder);
        var rng = new Random(1);
        var pixels = new byte[count * side * side];
        rng.NextBytes(pixels);
        var labels = Enumerable.Range(0, count).Select(i => (byte)(i % classes)).ToArray();
        Write(Path.Combine(folder, "train-images-idx3-ubyte.gz"), pixels, [count, side, side]);
        Write(Path.Combine(folder, "train-labels-idx1-ubyte.gz"), labels, [count]);

        static void Write(string path, byte[] data, int[] dims)
        {
            var bytes = new byte[4 + 4 * dims.Length + data.Length];
            bytes[2] = 0x08; // unsigned bytes
            bytes[3] = (byte)dims.Length;
            for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * i), dims[i]);
            data.CopyTo(bytes, 4 + 4 * dims.Length);
            using var file = File.Create(path);
            using var gz = new System.IO.Compression.GZipStream(file, System.IO.Compression.CompressionLevel.Fastest);
            gz.Write(bytes);
        }
    }
}
