using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Api.Cli.Evidence;

/// <summary><c>bench peak</c>: in one run, libtorch's float32 matmul rate on this machine (the ceiling) and the DiT forward
/// FLOP rate of DiT-XL/2 at 256 and of the demo model's size, with the ratio of each to the ceiling.</summary>
public static class PeakBenchmark
{
    /// <summary>The demo model's architecture (models/dit-fashion-mnist): 28×28 grayscale in pixel space, patch 4, hidden 128, depth 6.</summary>
    public static DiTConfig Demo { get; } = new()
    {
        InputSize = 28, PatchSize = 4, InChannels = 1, HiddenSize = 128, Depth = 6, NumHeads = 4, NumClasses = 10, LearnSigma = true,
    };

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var xlBatch = new Option<string>("--xl-batch") { Description = "DiT-XL/2 at 256 batch sizes (empty: skip)", DefaultValueFactory = _ => "1,2,8" };
        var demoBatch = new Option<string>("--demo-batch") { DefaultValueFactory = _ => "1,2,8,16,64" };
        var iters = new Option<int>("--iters") { Description = "Timed forwards per batch (median); one warm-up per model", DefaultValueFactory = _ => 2 };
        var threads = new Option<int?>("--threads");
        var command = new Command("peak", "sgemm peak vs DiT forward GFLOP/s (XL/2 at 256 and the demo size), ratios from one run") { xlBatch, demoBatch, iters, threads };
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            int n = Math.Max(1, parse.GetValue(iters));
            var xl = Batches(parse.GetValue(xlBatch)!);
            var demo = Batches(parse.GetValue(demoBatch)!);
            // A fresh thread, like the server's worker: the main thread's OpenMP team spin-waits on a busy machine (docs/server.md).
            Exception? error = null;
            var thread = new Thread(() =>
            {
                try { Run(stdout, n, xl, demo); }
                catch (Exception e) { error = e; }
            }) { Name = "bench-peak" };
            thread.Start();
            thread.Join();
            if (error is not null) throw error;
            return CommandLine.ExitOk;
        }));
        return command;
    }

    private static int[] Batches(string text) => text.Length == 0 ? [] :
        text.Split(',').Select(s => int.TryParse(s, out var b) && b > 0 ? b : throw new UsageException($"bad batch size '{s}'")).ToArray();

    private static void Run(TextWriter stdout, int iters, int[] xl, int[] demo)
    {
        using var mode = inference_mode();
        stdout.WriteLine($"# bench peak: torch threads {get_num_threads()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {EvidenceCommands.Load()}");
        double peak = Sgemm(2048, 1152, 1152, 10);
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sgemm\t(2048x1152)·(1152x1152)\t{peak:F1} GFLOP/s (the ceiling below)"));
        stdout.WriteLine("model\tbatch\tforward_ms\tGFLOP/image\tforward_GFLOP/s\tsgemm_same_shape_GFLOP/s\tforward/sgemm_same\tforward/peak");
        if (xl.Length > 0) Model(stdout, "DiT-XL/2@256", DiTConfig.FromPreset("DiT-XL/2") with { InputSize = 32 }, xl, iters, peak);
        if (demo.Length > 0) Model(stdout, "demo", Demo, demo, iters, peak);
        stdout.WriteLine($"# done, load {EvidenceCommands.Load()}");
    }

    private static void Model(TextWriter stdout, string name, DiTConfig config, int[] batches, int iters, double peak)
    {
        using var model = new DiT(config);
        using (no_grad())
            foreach (var (n, p) in model.named_parameters())
                if (n != "pos_embed") p.normal_(0, 0.02); // the official init zeroes adaLN; random weights make the forward real
        model.eval();
        double gflop = ForwardFlops(config) / 1e9;
        bool warm = false;
        foreach (var batch in batches)
        {
            var times = new List<double>();
            for (int i = warm ? 0 : -1; i < iters; i++)
            {
                using var scope = NewDisposeScope();
                var x = randn(batch, config.InChannels, config.InputSize, config.InputSize);
                var t = randint(0, 1000, [batch]);
                var y = randint(0, config.NumClasses, [batch]);
                var sw = Stopwatch.StartNew();
                var output = model.forward(x, t, y);
                _ = output.sum().item<float>();
                if (i >= 0) times.Add(sw.Elapsed.TotalMilliseconds);
            }
            warm = true;
            times.Sort();
            double ms = times[times.Count / 2], rate = gflop * batch / (ms / 1000);
            // The MLP's first matmul at this batch: (batch·T × D)·(D × 4D), the forward's largest GEMM shape.
            double same = Sgemm(batch * config.NumPatches, config.HiddenSize, (int)(config.HiddenSize * config.MlpRatio), Math.Max(3, iters * 2));
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name}\t{batch}\t{ms:F1}\t{gflop:F3}\t{rate:F1}\t{same:F1}\t{rate / same:F2}\t{rate / peak:F2}"));
        }
    }

    /// <summary>Median GFLOP/s of (m×k)·(k×n) after two warm-ups.</summary>
    public static double Sgemm(int m, int k, int n, int iters)
    {
        using var a = randn(m, k);
        using var b = randn(k, n);
        var times = new List<double>();
        for (int i = 0; i < 2 + iters; i++)
        {
            var sw = Stopwatch.StartNew();
            using (var c = a.matmul(b)) { }
            if (i >= 2) times.Add(sw.Elapsed.TotalSeconds);
        }
        times.Sort();
        return 2.0 * m * k * n / 1e9 / times[times.Count / 2];
    }

    /// <summary>FLOPs of one image's forward (a multiply-add counts 2): patch embedding, timestep MLP, per block adaLN,
    /// QKV, attention scores and values, projection, MLP; final adaLN and linear. 236.9 GFLOP for XL/2 at 256 (= 2 × the paper's 118.6).</summary>
    public static double ForwardFlops(DiTConfig c)
    {
        double t = c.NumPatches, d = c.HiddenSize, p2 = c.PatchSize * c.PatchSize, hidden = d * c.MlpRatio;
        double embed = 2 * t * p2 * c.InChannels * d + 2 * (256 * d + d * d);
        double block = 2 * d * 6 * d + 2 * t * d * 3 * d + 4 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * hidden;
        double final = 2 * d * 2 * d + 2 * t * d * p2 * c.OutChannels;
        return embed + c.Depth * block + final;
    }
}
