using System.CommandLine;
using System.Globalization;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;

namespace DiTServer.Api.Cli;

/// <summary><c>sample</c>: one PNG per label, seeded as the fixtures' convention (one CPU generator per run).</summary>
public static class SampleCommand
{
    /// <summary>The model folder's own sampling defaults (a distilled student's), read from its manifest before any weight.</summary>
    internal static SamplingOptions? ModelDefaults(string model) => ServedDefaults.Of(ModelManifest.Load(model));

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string>("--model") { Description = "Model folder with model.json, or the manifest file", Required = true };
        var labels = new Option<string>("--labels") { Description = "Comma-separated class indices or names, one image each (e.g. 207,\"golden retriever\")",
            Required = true };
        var cfg = new Option<double>("--cfg") { Description = "Classifier-free guidance scale (1 = no guidance)", DefaultValueFactory = _ => 4.0 };
        var seed = new Option<long>("--seed") { Description = "Seed of the run's generator", DefaultValueFactory = _ => 0 };
        var samplerOptions = new SamplerCliOptions(SamplerDefaults.Sampler.Name());
        var eta = new Option<double>("--eta") { Description = "DDIM eta (0 = deterministic)", DefaultValueFactory = _ => 0.0 };
        var guidance = new Option<string>("--guidance") { Description = "official (first 3 channels, as the DiT code) or all (every ε channel, as diffusers)",
            DefaultValueFactory = _ => "official" };
        var output = new Option<string>("--out") { Description = "Output folder for 0.png, 1.png, …", Required = true };
        var device = new Option<string>("--device") { Description = "cpu or cuda[:i]", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int?>("--threads") { Description = "Torch CPU threads (default: all cores)" };
        var precision = new Option<string>("--precision") { Description = "fp32, tf32 (CUDA) or bf16: how the DiT computes",
            DefaultValueFactory = _ => "fp32" };
        var index = new Option<int?>("--index")
        {
            Description = "Write only the image at this batch position (0-based): with the request's labels and seed it is that image of a server response, " +
                "which one generator per batch makes depend on the whole batch",
        };

        var init = new Option<string?>("--init")
        {
            Description = "Image to image: a PNG of the model's image size to start from instead of noise (SDEdit)",
        };
        var strength = new Option<double?>("--strength")
        {
            Description = $"With --init: 0 < s ≤ 1, the share of the schedule run again (ceil(s·steps) steps); default {ImageEdit.DefaultStrength}",
        };
        var mask = new Option<string?>("--mask") { Description = "With --init: a PNG of the same size; white is redrawn, black is kept exactly" };

        var command = new Command("sample", "Generate images with a DiT model and write them as PNG files")
        {
            model, labels, cfg, seed, eta, guidance, output, device, threads, precision, index, init, strength, mask,
        };
        foreach (var option in samplerOptions.All) command.Options.Add(option);
        command.SetAction(parse => CommandLine.Guard(stderr, () =>
        {
            var options = samplerOptions.Read(parse, new SamplingOptions
            {
                CfgScale = parse.GetValue(cfg),
                Seed = parse.GetValue(seed),
                Eta = parse.GetValue(eta),
                Guidance = ParseGuidance(parse.GetValue(guidance)!),
            }, ModelDefaults(parse.GetValue(model)!));
            var (initPath, maskPath, editStrength) = (parse.GetValue(init), parse.GetValue(mask), parse.GetValue(strength));
            if (initPath is null && editStrength is not null) throw new UsageException("--strength applies only with --init (the image to start from)");
            if (initPath is null && maskPath is not null) throw new UsageException("--mask applies only with --init (it says which pixels of it are redrawn)");
            if (editStrength is { } s && !(s > 0 && s <= 1))
                throw new UsageException($"--strength must be in (0, 1]: 0 < s ≤ 1, got {s.ToString(CultureInfo.InvariantCulture)}");
            DeviceOption.ApplyThreads(parse.GetValue(threads));
            var torchDevice = DeviceOption.Parse(parse.GetValue(device)!);
            var computePrecision = DeviceOption.ParsePrecision(parse.GetValue(precision)!, torchDevice);
            string outDir = parse.GetValue(output)!;

            using var loaded = LoadedModel.Load(parse.GetValue(model)!, torchDevice, computePrecision);
            options = samplerOptions.WithModelCache(parse, options, loaded.Manifest.DefaultCache);
            var labelIds = ResolveLabels(parse.GetValue(labels)!, loaded.Classes, loaded.Config.NumClasses);
            int? only = parse.GetValue(index);
            if (only is { } i && (i < 0 || i >= labelIds.Length))
                throw new UsageException($"--index must be in 0..{labelIds.Length - 1} (one per label), got {i}");
            if (options.CfgScale != 1 && loaded.Config.ClassDropoutProb <= 0)
                throw new UsageException("this model has no null class, so --cfg must be 1");
            ValidateForModel(loaded, options);
            var edit = initPath is null ? null : ReadEdit(loaded, initPath, maskPath, editStrength ?? ImageEdit.DefaultStrength);
            Directory.CreateDirectory(outDir);

            var started = System.Diagnostics.Stopwatch.StartNew();
            var progress = Console.IsErrorRedirected ? null : new Action<int, int>((done, total) => stderr.Write($"\rstep {done}/{total}"));
            IReadOnlyList<GeneratedImage> images;
            // Settings that turn the sampling non-finite are the caller's to change: one line, exit 2, no PNG written.
            try { images = ImagePipeline.Generate(loaded, labelIds, options, progress, edit); }
            catch (NonFiniteSampleException e) { throw new UsageException(e.Message); }
            if (progress is not null) stderr.WriteLine();
            foreach (var image in images.Where(im => only is null || im.Index == only))
            {
                var path = Path.Combine(outDir, $"{image.Index}.png");
                File.WriteAllBytes(path, image.Png);
                stdout.WriteLine($"{path}\tclass {image.ClassLabel} ({image.ClassName})");
            }
            string steps = edit is null ? $"{options.Steps}" : $"{edit.StepsRun(options.Steps)} of {options.Steps}";
            string edited = edit is null ? "" : FormattableString.Invariant($", strength {edit.Strength}") + (edit.MaskSummary() is { } m ? $", mask {m}" : "");
            stdout.WriteLine($"{images.Count} image(s), {steps} {Describe(options)} steps{edited}, cfg " +
                $"{options.CfgScale.ToString(CultureInfo.InvariantCulture)}, seed {options.Seed}, {started.Elapsed.TotalSeconds:F1} s");
            return CommandLine.ExitOk;
        }));
        return command;
    }

    /// <summary>The --init image (and --mask) for the model, read by the same reader as the API's init_image and mask.</summary>
    private static ImageEdit ReadEdit(LoadedModel loaded, string initPath, string? maskPath, double strength)
    {
        try
        {
            var pixels = PngImageReader.Pixels(ReadFile(initPath, "--init"), loaded.ImageSize, loaded.ImageChannels, "--init");
            var mask = maskPath is null ? null : PngImageReader.Mask(ReadFile(maskPath, "--mask"), loaded.ImageSize, "--mask");
            return new ImageEdit(pixels, loaded.ImageSize, loaded.ImageChannels, strength, mask);
        }
        catch (ImageInputException e) { throw new UsageException($"{e.Reason} ({(e.ParamName == "--mask" ? maskPath : initPath)})"); }
    }

    private static byte[] ReadFile(string path, string option)
    {
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new UsageException($"{option}: cannot read {path}: {e.Message}");
        }
    }

    internal static void ValidateOptions(SamplingOptions options)
    {
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException(OneLine(e)); }
    }

    /// <summary>The rules that need the model (thresholding on a latent model, guidance without a null class).</summary>
    internal static void ValidateForModel(LoadedModel loaded, SamplingOptions options)
    {
        try { ImagePipeline.ValidateFor(loaded, options); }
        catch (ArgumentException e) { throw new UsageException(OneLine(e)); }
    }

    private static string OneLine(ArgumentException e) => e.Message.Split(" (Parameter")[0].Split("\nActual value")[0].Trim();

    /// <summary>"dpmpp_2m (logsnr)" etc. for the summary line.</summary>
    internal static string Describe(SamplingOptions o) => o.Sampler switch
    {
        SamplerKind.UniPc => $"unipc (order {o.EffectiveOrder}, {o.EffectiveUniPcVariant.Name()}, {o.EffectiveSpacing.Name()})",
        _ when o.IsSolver => $"{o.Sampler.Name()} ({o.EffectiveSpacing.Name()})",
        _ => o.Sampler.Name(),
    } + (o.IsCached ? $" (cache_interval {o.CacheInterval}, {o.CacheMode.Name()})" : "");

    internal static SamplerKind ParseSampler(string s) =>
        SamplerNames.Samplers.TryGetValue(s.Trim(), out var kind) ? kind
            : throw new UsageException($"unknown sampler '{s}'; use {SamplerNames.Alternatives(SamplerNames.Samplers.Keys)}");

    internal static GuidanceMode ParseGuidance(string s) => s.ToLowerInvariant() switch
    {
        "official" => GuidanceMode.Official,
        "all" => GuidanceMode.All,
        _ => throw new UsageException($"unknown guidance '{s}'; use official or all"),
    };

    /// <summary>"207,golden retriever, 3" → class indices; names match any alias, case-insensitive.</summary>
    internal static int[] ResolveLabels(string list, ClassNames classes, int numClasses)
    {
        var parts = list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new UsageException("--labels is empty");
        return parts.Select(p => classes.TryResolve(p, numClasses, out var id, out var error) ? id : throw new UsageException(error)).ToArray();
    }
}
