using DiTServer.Core.Sampling;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Vae;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Pipeline;

/// <summary>A servable model: the manifest, the DiT with its weights, the VAE (or none for pixel-space models) and class names.</summary>
public sealed class LoadedModel : IDisposable
{
    public required ModelManifest Manifest { get; init; }
    public required DiT Model { get; init; }
    /// <summary>Null for a pixel-space model: samples are the images.</summary>
    public AutoencoderKL? Vae { get; init; }
    public required ClassNames Classes { get; init; }
    public required Device Device { get; init; }
    public Precision Precision { get; init; } = Precision.Float32;
    /// <summary>What a request that names no sampler gets on this model (its manifest's "defaults"); null = the server's.</summary>
    public SamplingOptions? Defaults { get; init; }

    public string Name => Manifest.Name;
    public DiTConfig Config => Model.Config;

    /// <summary>Image side in pixels: the latent size times the VAE's downsampling factor.</summary>
    public int ImageSize => Config.InputSize * (Vae?.Config.DownsamplingFactor ?? 1);

    /// <summary>Channels of the decoded image (3 for RGB, 1 for grayscale).</summary>
    public int ImageChannels => Vae?.Config.OutChannels ?? Config.InChannels;

    /// <summary>Loads a model folder (with model.json) or manifest file strictly: weights on the CPU, then moved.</summary>
    /// <exception cref="InvalidDataException">Bad manifest, unreadable file, or weights that do not fit (named key and shapes).</exception>
    /// <param name="precision">How the DiT computes (the VAE stays float32; TF32 reaches it too, being process-wide).</param>
    public static LoadedModel Load(string folderOrManifest, Device? device = null, Precision precision = Precision.Float32)
    {
        device ??= CPU;
        if (precision.Unsupported(device) is { } why) throw new ArgumentException(why);
        var manifest = ModelManifest.Load(folderOrManifest);
        var classes = LoadClassNames(manifest);
        var defaults = ServedDefaults.Of(manifest); // bad defaults fail at start, with the field named
        var model = new DiT(manifest.Config);
        AutoencoderKL? vae = null;
        try
        {
            using (var scope = NewDisposeScope())
            {
                var weights = CheckpointFile.LoadStateDict(manifest.WeightsPath);
                StateDict.LoadStrict(model, weights, manifest.WeightsPath);
            }
            model.eval();
            if (manifest.VaePath is not null)
            {
                vae = AutoencoderKL.FromFolder(manifest.VaePath);
                if (vae.Config.LatentChannels != manifest.Config.InChannels)
                    throw new InvalidDataException(
                        $"{manifest.ManifestPath}: in_channels is {manifest.Config.InChannels} but the VAE at {manifest.VaePath} has " +
                            $"{vae.Config.LatentChannels} latent channels");
            }
            if (device.type != DeviceType.CPU)
            {
                model.to(device);
                vae?.to(device);
            }
            precision.Apply(model);
        }
        catch (StateDictMismatchException e)
        {
            model.Dispose();
            vae?.Dispose();
            throw new InvalidDataException(e.Message, e);
        }
        catch
        {
            model.Dispose();
            vae?.Dispose();
            throw;
        }
        return new LoadedModel
        {
            Manifest = manifest, Model = model, Vae = vae, Classes = classes, Device = device, Precision = precision, Defaults = defaults,
        };
    }

    /// <summary>A model with random weights (N(0, 0.02), and a random Stable Diffusion VAE when the DiT takes 4-channel
    /// latents) for benchmarks: the same arithmetic as released weights, with nothing to download.</summary>
    public static LoadedModel Random(string preset, int imageSize, Device device, Precision precision = Precision.Float32)
    {
        if (precision.Unsupported(device) is { } why) throw new ArgumentException(why);
        var latent = DiTConfig.FromPreset(preset);
        bool useVae = latent.InChannels == VaeConfig.StableDiffusion.LatentChannels;
        int factor = useVae ? VaeConfig.StableDiffusion.DownsamplingFactor : 1;
        if (imageSize <= 0 || imageSize % (factor * latent.PatchSize) != 0)
            throw new ArgumentException($"image size must be a positive multiple of {factor * latent.PatchSize} for {preset}");
        var config = latent with { InputSize = imageSize / factor };
        var model = new DiT(config);
        model.RandomizeWeights(0.02);
        model.to(device).eval();
        var vae = useVae ? new AutoencoderKL(VaeConfig.StableDiffusion) : null;
        vae?.to(device).eval();
        precision.Apply(model);
        var manifest = new ModelManifest
        {
            ManifestPath = "(random weights)", Name = $"random {preset}", ArchitectureName = preset, Config = config, WeightsPath = "(random)",
        };
        return new LoadedModel { Manifest = manifest, Model = model, Vae = vae, Classes = LoadClassNames(manifest), Device = device, Precision = precision };
    }

    private static ClassNames LoadClassNames(ModelManifest manifest)
    {
        var names = manifest.ClassNamesInline is { } inline ? new ClassNames(inline)
            : manifest.ClassNamesPath is { } file ? ClassNames.FromFile(file)
            : manifest.Config.NumClasses == 1000 ? ClassNames.ImageNet
            : ClassNames.Numbered(manifest.Config.NumClasses);
        if (names.Count != manifest.Config.NumClasses)
            throw new InvalidDataException($"{manifest.ManifestPath}: class_names lists {names.Count} classes but num_classes is {manifest.Config.NumClasses}");
        return names;
    }

    public void Dispose()
    {
        Model.Dispose();
        Vae?.Dispose();
    }
}
