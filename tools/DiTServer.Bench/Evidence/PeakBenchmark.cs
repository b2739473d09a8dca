using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Bench.Evidence;

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
        var xlBatch = ListOption.Create("--xl-batch", "DiT-XL/2 at 256 batch sizes (empty: skip)", "1,2,8", ListOption.BatchSize, allowEmpty: true);
        var demoBatch = ListOption.Create("--demo-batch", "Demo-size batch sizes (empty: skip)", "1,2,8,16,64", ListOption.BatchSize, allowEmpty: true);
        var iters = new Option<int>("--iters") { Description = "Timed forwards per batch (median); one warm-up per model", DefaultValueFactory = _ => 2 };
        var threads = new Option<int?>("--threads");
        var profile = new Option<int>("--profile-batch") { Description = "Also time each op of one XL/2 block at this batch (0: skip)",
            DefaultValueFactory = _ => 8 };
        var compare = new Option<int>("--compare-block-scopes") { Description = "Only time XL/2 forwards at this batch with and without a dispose scope per " +
            "block, alternating (0: off)", DefaultValueFactory = _ => 0 };
        var command = new Command("peak", "sgemm peak vs DiT forward GFLOP/s (XL/2 at 256 and the demo size), ratios from one run") { xlBatch, demoBatch, iters,
            threads, profile, compare };
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            int n = Math.Max(1, parse.GetValue(iters));
            var xl = parse.GetValue(xlBatch)!;
            var demo = parse.GetValue(demoBatch)!;
            int profileBatch = parse.GetValue(profile), compareBatch = parse.GetValue(compare);
            // A fresh thread, like the server's worker: the main thread's OpenMP team spin-waits on a busy machine (docs/server.md).
            Exception? error = null;
            var thread = new Thread(() =>
            {
                try
                {
                    if (compareBatch > 0) CompareBlockScopes(stdout, compareBatch, n);
                    else Run(stdout, n, xl, demo, profileBatch);
                }
                catch (Exception e) { error = e; }
            }) { Name = "bench-peak" };
            thread.Start();
            thread.Join();
            if (error is not null) throw error;
            return CommandLine.ExitOk;
        }));
        return command;
    }

    private static void Run(TextWriter stdout, int iters, int[] xl, int[] demo, int profileBatch)
    {
        using var mode = inference_mode();
        stdout.WriteLine($"# bench peak: torch threads {get_num_threads()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load {EvidenceCommands.Load()}");
        double peak = Sgemm(2048, 1152, 1152, 10);
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sgemm\t(2048x1152)·(1152x1152)\t{peak:F1} GFLOP/s (the ceiling below)"));
        stdout.WriteLine("model\tbatch\tforward_ms\tGFLOP/image\tforward_GFLOP/s\tsgemm_same_shape_GFLOP/s\tforward/sgemm_same\tforward/peak");
        if (xl.Length > 0) Model(stdout, "DiT-XL/2@256", DiTConfig.FromPreset("DiT-XL/2") with { InputSize = 32 }, xl, iters, peak);
        if (demo.Length > 0) Model(stdout, "demo", Demo, demo, iters, peak);
        if (profileBatch > 0) Profile(stdout, DiTConfig.FromPreset("DiT-XL/2") with { InputSize = 32 }, profileBatch, Math.Max(3, iters));
        stdout.WriteLine($"# done, load {EvidenceCommands.Load()}");
    }

    private static void Model(TextWriter stdout, string name, DiTConfig config, int[] batches, int iters, double peak)
    {
        using var model = new DiT(config);
        model.RandomizeWeights(0.02); // the official init zeroes adaLN; random weights make the forward real
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

    /// <summary>Where one DiT block's time goes: each op of <c>DiTBlock.forward</c> (adaLN-Zero) timed alone on tensors of
    /// the block's shapes, median of <paramref name="iters"/>, with its share of the block and its GFLOP/s.</summary>
    private static void Profile(TextWriter stdout, DiTConfig c, int batch, int iters)
    {
        long n = batch, t = c.NumPatches, d = c.HiddenSize, h = c.NumHeads, hidden = (long)(d * c.MlpRatio);
        using var scope = NewDisposeScope();
        var x = randn(n, t, d);
        var cond = randn(n, d);
        Tensor W(long o, long i) => randn(o, i) * 0.02;
        var (wAda, bAda) = (W(6 * d, d), zeros(6 * d));
        var (wQkv, bQkv) = (W(3 * d, d), zeros(3 * d));
        var (wProj, bProj) = (W(d, d), zeros(d));
        var (wFc1, bFc1) = (W(hidden, d), zeros(hidden));
        var (wFc2, bFc2) = (W(d, hidden), zeros(d));
        var m = nn.functional.linear(nn.functional.silu(cond), wAda, bAda).chunk(6, 1);
        var normed = nn.functional.layer_norm(x, [d], eps: 1e-6);
        var modulated = DiTBlock.Modulate(normed, m[0], m[1]);
        var qkv = nn.functional.linear(modulated, wQkv, bQkv).reshape(n, t, 3, h, d / h).permute(2, 0, 3, 1, 4);
        var attn = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]);
        var merged = attn.transpose(1, 2).reshape(n, t, d);
        var fc1 = nn.functional.linear(modulated, wFc1, bFc1);
        using var gelu = nn.GELU(TorchSharp.Modules.GELU.Approximate.tanh);
        var act = gelu.forward(fc1);
        var ops = new (string Name, double Flops, Func<Tensor> Op)[]
        {
            ("adaLN (SiLU + linear 6D)", 2.0 * n * d * 6 * d, () => nn.functional.linear(nn.functional.silu(cond), wAda, bAda)),
            ("layer_norm", 0, () => nn.functional.layer_norm(x, [d], eps: 1e-6)),
            ("modulate x(1+scale)+shift", 0, () => DiTBlock.Modulate(normed, m[0], m[1])),
            ("qkv linear", 2.0 * n * t * d * 3 * d, () => nn.functional.linear(modulated, wQkv, bQkv)),
            ("qkv reshape/permute", 0, () => nn.functional.linear(modulated, wQkv, bQkv).reshape(n, t, 3, h, d / h).permute(2, 0, 3, 1, 4).contiguous()),
            ("scaled_dot_product_attention", 4.0 * n * t * t * d, () => nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])),
            ("attn transpose+reshape", 0, () => attn.transpose(1, 2).reshape(n, t, d)),
            ("proj linear", 2.0 * n * t * d * d, () => nn.functional.linear(merged, wProj, bProj)),
            ("fc1 linear", 2.0 * n * t * d * hidden, () => nn.functional.linear(modulated, wFc1, bFc1)),
            ("GELU (tanh)", 0, () => gelu.forward(fc1)),
            ("fc2 linear", 2.0 * n * t * hidden * d, () => nn.functional.linear(act, wFc2, bFc2)),
            ("gate + residual (x2)", 0, () => x + m[2].unsqueeze(1) * x),
        };
        var results = new List<(string, double, double)>();
        foreach (var (name, flops, op) in ops)
        {
            var times = new List<double>();
            for (int i = -1; i < iters; i++)
            {
                using var inner = NewDisposeScope();
                var sw = Stopwatch.StartNew();
                _ = op();
                if (i >= 0) times.Add(sw.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            double ms = times[times.Count / 2] * (name.EndsWith("(x2)", StringComparison.Ordinal) ? 2 : 1);
            if (name == "qkv reshape/permute") ms -= results.First(r => r.Item1 == "qkv linear").Item2; // the copy alone
            results.Add((name, ms, flops));
        }
        double total = results.Sum(r => r.Item2);
        stdout.WriteLine($"# profile: one DiT-XL/2 block at batch {batch} ({t} tokens), ops timed alone, median of {iters}; block total {total:F0} ms × " +
            $"{c.Depth} blocks");
        stdout.WriteLine("op	ms	share	GFLOP/s");
        foreach (var (name, ms, flops) in results)
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name}	{ms:F1}	{100 * ms / total:F0}%	{(flops > 0 ? (flops / 1e9 / (ms / 1000)).ToString("F1", CultureInfo.InvariantCulture) : "-")}"));
    }

    /// <summary>XL/2 forwards at <paramref name="batch"/> alternating with and without <see cref="DiT.ScopePerBlock"/> on its own model
    /// (after one batch-1 warm-up), with the process's peak RSS growth in each.</summary>
    private static void CompareBlockScopes(TextWriter stdout, int batch, int rounds)
    {
        using var mode = inference_mode();
        var config = DiTConfig.FromPreset("DiT-XL/2") with { InputSize = 32 };
        using var model = new DiT(config);
        model.RandomizeWeights(0.02);
        model.eval();
        double gflop = ForwardFlops(config) / 1e9 * batch;
        stdout.WriteLine($"# bench peak --compare-block-scopes {batch}: torch threads {get_num_threads()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, load " +
            $"{EvidenceCommands.Load()}");
        double Forward(int b)
        {
            using var scope = NewDisposeScope();
            var x = randn(b, config.InChannels, config.InputSize, config.InputSize);
            var sw = Stopwatch.StartNew();
            _ = model.forward(x, randint(0, 1000, [b]), randint(0, 1000, [b])).sum().item<float>();
            return sw.Elapsed.TotalMilliseconds;
        }
        Forward(1);
        stdout.WriteLine("scope_per_block	forward_ms	GFLOP/s	load");
        for (int r = 0; r < rounds; r++)
            foreach (var on in new[] { true, false })
            {
                model.ScopePerBlock = on;
                double ms = Forward(batch);
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{on}	{ms:F0}	{gflop / (ms / 1000):F1}	{EvidenceCommands.Load()}"));
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
