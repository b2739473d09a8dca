using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Bench;

/// <summary>Every benchmark command; <c>bench forward</c> (DiT forward latency with random weights, and the GFLOP/s it
/// implies) and <c>bench sgemm</c> are defined here.</summary>
public static class BenchCommand
{
    /// <summary>The commands, each added to one parent only (the program's root), so the root's --help reaches them.</summary>
    public static IReadOnlyList<Command> Create(TextWriter stdout, TextWriter stderr)
    {
        var arch = new Option<string>("--arch") { Description = "DiT preset", DefaultValueFactory = _ => "DiT-XL/2" };
        var imageSize = new Option<int>("--image-size") { Description = "Image size in pixels (latent = size/8)", DefaultValueFactory = _ => 256 };
        var batches = ListOption.Create("--batch", "Batch sizes", "2,8", ListOption.BatchSize);
        var warmup = new Option<int>("--warmup") { DefaultValueFactory = _ => 1 };
        var iters = new Option<int>("--iters") { Description = "Timed runs per batch size (median reported)", DefaultValueFactory = _ => 3 };
        var gflops = new Option<double?>("--gflops-per-image")
        {
            Description = "Override the forward cost per image in the paper's Gflops (multiply-adds, as fvcore counts; real FLOPs are twice that). Default: " +
                "counted from --arch and --image-size (118.6 for DiT-XL/2 at 256)",
        };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int?>("--threads");
        var precision = new Option<string>("--precision") { Description = "fp32, tf32 (CUDA) or bf16", DefaultValueFactory = _ => "fp32" };

        var forward = new Command("forward", "Time DiT forward passes (random weights, inference mode)")
        {
            arch, imageSize, batches, warmup, iters, gflops, device, threads, precision,
        };
        forward.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            var dev = DeviceOption.Parse(parse.GetValue(device)!);
            var mode = DeviceOption.ParsePrecision(parse.GetValue(precision)!, dev);
            int size = parse.GetValue(imageSize);
            if (size <= 0 || size % 8 != 0) throw new UsageException("--image-size must be a positive multiple of 8");
            var config = DiTConfig.FromPreset(parse.GetValue(arch)!) with { InputSize = size / 8 };
            var sizes = parse.GetValue(batches)!;
            int nWarm = parse.GetValue(warmup), nIter = Math.Max(1, parse.GetValue(iters));
            // Counted from the architecture: a fixed XL/2 figure made DiT-S/8 report 12,629 "GFLOP/s".
            double perImage = parse.GetValue(gflops) ?? Evidence.PeakBenchmark.ForwardFlops(config) / 2 / 1e9;

            using var model = new DiT(config);
            model.RandomizeWeights(0.02); // official init zeroes adaLN and the output; timing is the same, but random weights make it a real forward
            model.to(dev).eval();
            mode.Apply(model);
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"# {parse.GetValue(arch)} at {size}px (latent {config.InputSize}, {config.NumPatches} tokens), {perImage:F2} paper Gflops per image, " +
                    $"{mode.ToOptionValue()}, device {GenerateBenchmark.DeviceName(dev)}, {DateTime.UtcNow:yyyy-MM-dd}"));
            stdout.WriteLine("batch\tmedian_ms\tms_per_image\tpaper_Gflops/s\tGFLOP/s(2x)");
            foreach (var batch in sizes)
            {
                var times = new List<double>();
                for (int i = 0; i < nWarm + nIter; i++)
                {
                    using var scope = NewDisposeScope();
                    using var inference = inference_mode();
                    var x = randn(batch, config.InChannels, config.InputSize, config.InputSize, device: dev);
                    var t = randint(0, 1000, new long[] { batch }, device: dev);
                    var y = randint(0, config.NumClasses, new long[] { batch }, device: dev);
                    var sw = Stopwatch.StartNew();
                    var output = model.forward(x, t, y);
                    if (dev.type == DeviceType.CUDA) cuda.synchronize();
                    _ = output.sum().item<float>();
                    if (i >= nWarm) times.Add(sw.Elapsed.TotalMilliseconds);
                }
                times.Sort();
                double median = times[times.Count / 2];
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{batch}\t{median:F0}\t{median / batch:F0}\t{perImage * batch / (median / 1000):F1}\t{2 * perImage * batch / (median / 1000):F1}"));
            }
            return CommandLine.ExitOk;
        }));
        return [forward, CreateSgemm(stdout, stderr), GenerateBenchmark.Create(stdout, stderr), CacheBenchmark.Create(stdout, stderr),
            ServeBenchmark.Create(stdout, stderr),
            .. Evidence.EvidenceCommands.Create(stdout, stderr)];
    }


    /// <summary><c>bench sgemm</c>: the float32 matmul rate libtorch reaches here, the ceiling for a DiT forward.</summary>
    private static Command CreateSgemm(TextWriter stdout, TextWriter stderr)
    {
        var m = new Option<int>("--m") { Description = "Rows (tokens × batch); 2048 = 8 images of 256 tokens", DefaultValueFactory = _ => 2048 };
        var k = new Option<int>("--k") { DefaultValueFactory = _ => 1152 };
        var n = new Option<int>("--n") { DefaultValueFactory = _ => 1152 };
        var iters = new Option<int>("--iters") { DefaultValueFactory = _ => 10 };
        var threads = new Option<int?>("--threads");
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "cpu" };
        var precision = new Option<string>("--precision") { Description = "fp32, tf32 (CUDA) or bf16 operands", DefaultValueFactory = _ => "fp32" };
        var command = new Command("sgemm", "Time (m×k)·(k×n) matmuls (median of --iters after 2 warm-ups)") { m, k, n, iters, threads, device, precision };
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            var dev = DeviceOption.Parse(parse.GetValue(device)!);
            var mode = DeviceOption.ParsePrecision(parse.GetValue(precision)!, dev);
            mode.SetTensorCoreSwitches(); // bf16 operands do not use the TF32 switch, so this times the same matmul
            var type = mode == Core.Model.Precision.BFloat16 ? ScalarType.BFloat16 : ScalarType.Float32;
            long rows = parse.GetValue(m), inner = parse.GetValue(k), cols = parse.GetValue(n);
            if (rows < 1 || inner < 1 || cols < 1) throw new UsageException("--m, --k and --n must be positive");
            using var a = randn(rows, inner, dtype: type, device: dev);
            using var b = randn(inner, cols, dtype: type, device: dev);
            var times = new List<double>();
            for (int i = 0; i < 2 + Math.Max(1, parse.GetValue(iters)); i++)
            {
                var sw = Stopwatch.StartNew();
                using (var c = a.matmul(b)) { if (dev.type == DeviceType.CUDA) cuda.synchronize(); }
                if (i >= 2) times.Add(sw.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            double median = times[times.Count / 2], gflop = 2.0 * rows * inner * cols / 1e9;
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"sgemm ({rows}x{inner})·({inner}x{cols}): {gflop:F1} GFLOP, median {median:F1} ms, {gflop / (median / 1000):F1} GFLOP/s, " +
                    $"{mode.ToOptionValue()}, device {GenerateBenchmark.DeviceName(dev)}"));
            return CommandLine.ExitOk;
        }));
        return command;
    }
}
