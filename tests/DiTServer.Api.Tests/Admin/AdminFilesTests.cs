using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using DiTServer.Api.Admin;
using DiTServer.Core.Training;
using Microsoft.Extensions.DependencyInjection;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace DiTServer.Api.Tests;

/// <summary>The admin API does not trust its folders (issue 19, item 6): only regular files are read, image headers are
/// checked against a pixel limit before decoding, dataset scans time out, runs are listed at every depth a job can
/// have, and partial checkpoints left by a killed process are deleted at start.</summary>
public class AdminFilesTests() : AdminTestFolders("dit-admin-files-")
{
    private ServerFactory Server(TimeProvider? clock = null, params (string, string)[] more) => new(
        [("Training:DataRoot", DataRoot), ("Training:OutputRoot", OutputRoot), ("Serving:WarmUp", "false"),
         ("Admin:ApiKeySha256", AdminKey.HashOf(Key)), .. more])
    {
        ConfigureServices = clock is null ? null : services => services.AddSingleton(clock),
    };

    private static HttpClient Admin(ServerFactory server)
    {
        var client = server.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Key);
        return client;
    }

    private const string TinyModel = """ "model": { "hidden_size": 32, "depth": 1, "num_heads": 2, "patch_size": 4 } """;

    private static string Job(string output, string dataset = "bands", string extra = "") =>
        $$"""{ "dataset": "{{dataset}}", "output": "{{output}}", "steps": 1, "batch_size": 4, "log_every": 1, {{TinyModel}} {{extra}} }""";

    /// <summary>A class-subfolder dataset of small grey images.</summary>
    private string Shapes(string name, int perClass = 2)
    {
        var folder = Path.Combine(DataRoot, name);
        foreach (var cls in new[] { "a", "b" })
        {
            Directory.CreateDirectory(Path.Combine(folder, cls));
            for (int i = 0; i < perClass; i++)
            {
                using var image = new Image<L8>(12, 10, new L8((byte)(40 * i)));
                image.SaveAsPng(Path.Combine(folder, cls, $"{i}.png"));
            }
        }
        return folder;
    }

    private static async Task<string> Refused(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return text;
    }

    private static async Task<string> Started(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task A_fifo_named_like_an_image_is_400_at_once_and_the_next_job_starts()
    {
        if (!OperatingSystem.IsLinux()) return;
        var folder = Shapes("piped");
        var fifo = Path.Combine(folder, "a", "x.png");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo])) mkfifo.WaitForExit();
        Assert.True(File.Exists(fifo));
        using var server = Server();
        var client = Admin(server);
        // Before: opening the FIFO blocked the POST for good, holding the start lock.
        var text = await Refused(await client.PostAsync("/v1/admin/training/jobs", Json(Job("p", "piped", """, "image_size": 8, "channels": 1"""))));
        Assert.Contains("not a regular file", text);
        var id = await Started(await client.PostAsync("/v1/admin/training/jobs", Json(Job("next"))));
        Assert.Equal("Succeeded", (await WaitForState(client, id, "Succeeded", "Failed")).GetProperty("state").GetString());
    }

    [Fact]
    public async Task An_image_over_the_configured_pixel_limit_is_400()
    {
        Shapes("shapes"); // 12×10 = 120 pixels each
        using var server = Server(null, ("Training:MaxImagePixels", "100"));
        var text = await Refused(await Admin(server).PostAsync("/v1/admin/training/jobs",
            Json(Job("s", "shapes", """, "image_size": 8, "channels": 1"""))));
        Assert.Contains("more than the limit of 100 pixels", text);
    }

    [Fact]
    public async Task A_20000_by_20000_png_header_is_refused_before_it_is_decoded()
    {
        var folder = Shapes("huge");
        // A real PNG whose header claims 20000×20000 (its pixels are those of 12×10): decoding it would allocate 1.2 GB first.
        var bytes = File.ReadAllBytes(Path.Combine(folder, "a", "0.png"));
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(16), 20000);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(20), 20000);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(29), Crc32(bytes.AsSpan(12, 17))); // IHDR's type and data
        File.WriteAllBytes(Path.Combine(folder, "a", "0.png"), bytes);
        using var server = Server();
        var text = await Refused(await Admin(server).PostAsync("/v1/admin/training/jobs", Json(Job("h", "huge", """, "image_size": 8, "channels": 1"""))));
        Assert.Contains("20000×20000 pixels is more than the limit", text);
    }

    /// <summary>A clock that moves one second each time it is read: every file of a scan takes "a second", without sleeping.</summary>
    private sealed class TickingClock : TimeProvider
    {
        private long ticks;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Interlocked.Add(ref ticks, TimeSpan.TicksPerSecond);
    }

    [Fact]
    public async Task A_dataset_scan_past_its_timeout_is_400_and_a_quick_one_starts()
    {
        Shapes("many", perClass: 6);
        using var server = Server(new TickingClock(), ("Training:DatasetScanTimeout", "00:00:05"));
        var client = Admin(server);
        var text = await Refused(await client.PostAsync("/v1/admin/training/jobs", Json(Job("m", "many", """, "image_size": 8, "channels": 1"""))));
        Assert.Contains("DatasetScanTimeout", text);
        Assert.False(Directory.Exists(Path.Combine(OutputRoot, "m")));
        await Started(await client.PostAsync("/v1/admin/training/jobs", Json(Job("quick")))); // an IDX folder: two files
    }

    /// <summary>Holds the first dataset scan that reads the clock after <see cref="Arm"/> until <see cref="Release"/>: a POST
    /// "still reading its dataset", without a slow disk or a sleep. Other readers of the clock pass.</summary>
    private sealed class ScanGate : TimeProvider
    {
        private readonly TaskCompletionSource held = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly ManualResetEventSlim release = new();
        private int armed;
        public Task Held => held.Task;
        public void Arm() => armed = 1;
        public void Release() => release.Set();
        public override long GetTimestamp()
        {
            if (Volatile.Read(ref armed) == 1 && new System.Diagnostics.StackTrace().ToString().Contains(nameof(DatasetScan))
                && Interlocked.Exchange(ref armed, 0) == 1)
            {
                held.SetResult();
                release.Wait();
            }
            return base.GetTimestamp();
        }
    }

    [Fact]
    public async Task A_job_reading_its_dataset_holds_no_lock_another_job_starts_meanwhile()
    {
        var gate = new ScanGate();
        using var server = Server(gate);
        var client = Admin(server);
        gate.Arm();
        var first = client.PostAsync("/v1/admin/training/jobs", Json(Job("first")));
        // (The 60 s bounds only turn a regression's deadlock into a failure; the gate, not the clock, orders the steps.)
        await gate.Held.WaitAsync(TimeSpan.FromSeconds(60)); // the first POST is inside its dataset scan
        try
        {
            // Before: the first POST held the start lock while it read, so this one waited behind it.
            var second = client.PostAsync("/v1/admin/training/jobs", Json(Job("second").Replace("\"steps\": 1", "\"steps\": 1000000")));
            var id = await Started(await second.WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.False(first.IsCompleted);
            gate.Release();
            // The second job runs: the first, done reading, is refused under the lock with 409.
            var refused = await first;
            Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
            Assert.False(Directory.Exists(Path.Combine(OutputRoot, "first")));
            await client.DeleteAsync($"/v1/admin/training/jobs/{id}");
            await WaitForState(client, id, "Cancelled", "Succeeded", "Failed");
        }
        finally { gate.Release(); }
    }

    [Fact]
    public async Task Runs_at_every_allowed_depth_are_listed_after_a_restart_and_a_run_in_the_root_hides_none()
    {
        string deep = string.Join('/', Enumerable.Range(0, TrainingJobRequestValidator.MaxOutputDepth).Select(i => $"l{i}"));
        var ids = new List<string>();
        using (var first = Server())
        {
            var client = Admin(first);
            foreach (var output in new[] { "top", deep, "top/inner" })
            {
                var id = await Started(await client.PostAsync("/v1/admin/training/jobs", Json(Job(output))));
                Assert.Equal("Succeeded", (await WaitForState(client, id, "Succeeded", "Failed")).GetProperty("state").GetString());
                ids.Add(id);
            }
        }
        // A run in the output root itself, as "output": "." made before it was refused.
        File.Copy(Path.Combine(OutputRoot, "top", TrainingSession.CheckpointFile), Path.Combine(OutputRoot, TrainingSession.CheckpointFile));

        using var second = Server();
        var listed = (await Admin(second).GetFromJsonAsync<JsonElement>("/v1/admin/training/jobs")).EnumerateArray()
            .Select(j => j.GetProperty("output").GetString()).ToList();
        Assert.Contains("top", listed);
        Assert.Contains("top/inner", listed);
        Assert.Contains(deep, listed);
        Assert.Contains(".", listed);
    }

    [Fact]
    public async Task Partial_checkpoints_left_by_a_killed_process_are_deleted_at_start()
    {
        var runFolder = Path.Combine(OutputRoot, "killed", "run");
        Directory.CreateDirectory(runFolder);
        string tmp = Path.Combine(runFolder, TrainingSession.CheckpointFile + ".tmp"), other = Path.Combine(runFolder, "notes.txt");
        File.WriteAllBytes(tmp, new byte[4096]);
        File.WriteAllText(other, "kept");
        using var server = Server();
        Assert.Equal(HttpStatusCode.OK, (await Admin(server).GetAsync("/v1/admin/training/jobs")).StatusCode);
        Assert.False(File.Exists(tmp));
        Assert.True(File.Exists(other));
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }
}
