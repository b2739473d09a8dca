using DiTServer.Core.Pipeline;
using DiTServer.Core.Vae;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Bench;

/// <summary><c>bench generate</c>: images/s of whole generations (sampler loop + VAE decode + pixels on the host)
/// by batch size and precision, with random weights (a random SD VAE for latent models).</summary>
/// <remarks>Each point is one generation of <c>batch</c> images (2·batch rows with guidance) after a short warm-up at
/// that shape, so cuBLAS/cuDNN have picked their kernels; the clock stops when the uint8 pixels reach the host,
/// which also waits for the device.</remarks>
public static class GenerateBenchmark
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var arch = new Option<string>("--arch") { Description = "DiT preset", DefaultValueFactory = _ => "DiT-XL/2" };
        var imageSize = new Option<int>("--image-size") { Description = "Image size in pixels (latent = size/8 with the VAE)", DefaultValueFactory = _ => 256 };
        var samplerOptions = new SamplerCliOptions("ddim");
        var cfg = new Option<double>("--cfg") { DefaultValueFactory = _ => 4.0 };
        var batches = ListOption.Create("--batch", "Images per generation", "1,2,4,8,16,32,64", ListOption.BatchSize);
        var precisions = ListOption.Create("--precision", "fp32, tf32 (CUDA), bf16", "fp32", s => s);
        var iters = new Option<int>("--iters") { Description = "Timed generations per point (median reported)", DefaultValueFactory = _ => 1 };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int?>("--threads");

        var command = new Command("generate", "Images/s of full generations (DiT sampling + VAE decode) by batch size and precision, random weights")
        {
            arch, imageSize, cfg, batches, precisions, iters, device, threads,
        };
        foreach (var option in samplerOptions.All) command.Options.Add(option);
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            var dev = DeviceOption.Parse(parse.GetValue(device)!);
            int size = parse.GetValue(imageSize);
            string preset = parse.GetValue(arch)!;
            var options = samplerOptions.Read(parse, new SamplingOptions { CfgScale = parse.GetValue(cfg), Seed = 0 });
            var sizes = parse.GetValue(batches)!;
            var modes = parse.GetValue(precisions)!.Select(s => DeviceOption.ParsePrecision(s, dev)).ToArray(); // by device: after parsing
            int nIter = Math.Max(1, parse.GetValue(iters));

            bool header = false;
            foreach (var precision in modes)
            {
                // A fresh model per precision: bf16 casts the weights in place, and the TF32 switches are process-wide.
                using var loaded = BenchModelOptions.Random(preset, size, dev, precision);
                var config = loaded.Config;
                if (!header)
                {
                    stdout.WriteLine($"# bench generate: {preset} at {size}px ({config.NumPatches} tokens), {options.Steps} " +
                        $"{SampleCommand.Describe(options)} steps, cfg {options.CfgScale.ToString(CultureInfo.InvariantCulture)}, VAE decode " +
                        $"{(loaded.Vae is null ? "none (pixel space)" : "sd (random weights)")}, device {DeviceName(dev)}, " +
                        $"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
                    stdout.WriteLine("precision\tbatch\tseconds\timages_per_s\tms_per_step\tdecode_ms");
                    header = true;
                }
                foreach (var batch in sizes)
                {
                    var labels = Enumerable.Range(0, batch).Select(i => (long)(i % config.NumClasses)).ToArray();
                    Generate(loaded, labels, options with { Steps = Math.Min(Math.Max(2, options.EffectiveOrder), options.Steps) }); // warm-up at this shape
                    var runs = Enumerable.Range(0, nIter).Select(_ => Generate(loaded, labels, options)).OrderBy(r => r.Total).ToList();
                    var (total, decode) = runs[runs.Count / 2];
                    stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{precision.ToOptionValue()}\t{batch}\t{total:F2}\t{batch / total:F2}\t" +
                        $"{(total - decode) * 1000 / options.Steps:F1}\t{decode * 1000:F0}"));
                    stdout.Flush();
                }
            }
            return CommandLine.ExitOk;
        }));
        return command;
    }

    /// <returns>seconds for the whole generation and for its decode part.</returns>
    private static (double Total, double Decode) Generate(LoadedModel model, long[] labels, SamplingOptions options)
    {
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var clock = Stopwatch.StartNew();
        var latents = LatentSampler.Sample(model.Model, labels, options, model.Device);
        if (model.Device.type == DeviceType.CUDA) cuda.synchronize();
        double sampled = clock.Elapsed.TotalSeconds;
        using var pixels = LatentDecoder.DecodeToPixels(model, latents); // on the host: waits for the device
        double total = clock.Elapsed.TotalSeconds;
        return (total, total - sampled);
    }

    internal static string DeviceName(Device device) =>
        device.type == DeviceType.CUDA ? $"{device} ({cuda.device_count()} CUDA device(s))" : $"cpu, {get_num_threads()} torch threads";
}
