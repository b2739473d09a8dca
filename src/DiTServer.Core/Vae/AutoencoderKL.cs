using System.Collections;
using System.Text.RegularExpressions;
using DiTServer.Core.Checkpoints;
using TorchSharp.Modules;
using TorchSharp.PyBridge;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace DiTServer.Core.Vae;

/// <summary>The Stable-Diffusion VAE: encoder to a diagonal Gaussian over latents, decoder back to pixels (diffusers autoencoders/autoencoder_kl.py
/// <c>AutoencoderKL</c>).</summary>
/// <remarks>Latents are unscaled here: callers multiply encoder samples by <see cref="VaeConfig.ScalingFactor"/>
/// and divide diffusion latents by it before <see cref="Decode"/>, as diffusers pipelines do.
/// <c>forward</c> is diffusers' <c>vae(x, sample_posterior=False).sample</c>: decode the posterior mean.</remarks>
public sealed partial class AutoencoderKL : Module<Tensor, Tensor>
{
    public const string SafetensorsFileName = "diffusion_pytorch_model.safetensors";
    public const string PickleFileName = "diffusion_pytorch_model.bin";

    private readonly Encoder encoder;
    private readonly Decoder decoder;
    private readonly Conv2d quant_conv;
    private readonly Conv2d post_quant_conv;

    /// <summary>Builds the network with TorchSharp's default random initialisation; load weights before use.</summary>
    public AutoencoderKL(VaeConfig config) : base(nameof(AutoencoderKL))
    {
        config.Validate();
        Config = config;
        encoder = new Encoder(config);
        decoder = new Decoder(config);
        quant_conv = Conv2d(2 * config.LatentChannels, 2 * config.LatentChannels, kernel_size: 1);
        post_quant_conv = Conv2d(config.LatentChannels, config.LatentChannels, kernel_size: 1);
        RegisterComponents();
    }

    public VaeConfig Config { get; }

    /// <summary>Unscaled latents (N, latent, h, w) to images (N, out, h·f, w·f), roughly in [−1, 1]; diffusers <c>vae.decode(z).sample</c>.</summary>
    public Tensor Decode(Tensor z) => decoder.forward(post_quant_conv.forward(z));

    /// <summary>The posterior <c>latent_dist</c> of images (N, in, H, W) in [−1, 1]: mean, std and log-variance, each (N, latent, H/f, W/f).</summary>
    public (Tensor Mean, Tensor Std, Tensor LogVar) Encode(Tensor image)
    {
        var moments = quant_conv.forward(encoder.forward(image)); // (N, 2·latent, h, w)
        var parts = moments.chunk(2, dim: 1);
        var mean = parts[0];
        // DiagonalGaussianDistribution (diffusers autoencoders/vae.py): clamp keeps exp() finite.
        var logVar = parts[1].clamp(-30.0, 20.0);
        var std = (logVar * 0.5).exp();
        return (mean, std, logVar);
    }

    /// <summary>One draw from the posterior, mean + std·ε, with ε = randn(mean.shape) from <paramref name="generator"/>
    /// (the global generator when null); diffusers <c>latent_dist.sample(generator)</c>. Unscaled.</summary>
    public Tensor EncodeSample(Tensor image, Generator? generator)
    {
        var (mean, std, _) = Encode(image);
        // Drawn on the CPU generator, then moved, so a seed gives the same latent on every device.
        var eps = randn(mean.shape, dtype: mean.dtype, generator: generator).to(mean.device);
        return mean + std * eps;
    }

    /// <summary>Reconstruction through the posterior mean (diffusers <c>forward(sample_posterior=False)</c>).</summary>
    public override Tensor forward(Tensor image) => Decode(Encode(image).Mean);

    /// <summary>Loads a diffusers AutoencoderKL folder: <c>config.json</c> plus
    /// <c>diffusion_pytorch_model.safetensors</c> (preferred) or <c>diffusion_pytorch_model.bin</c>; returns it in eval mode.</summary>
    public static AutoencoderKL FromFolder(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"VAE folder '{folder}' does not exist");
        var config = VaeConfig.FromFolder(folder);
        string safetensors = Path.Combine(folder, SafetensorsFileName);
        string pickle = Path.Combine(folder, PickleFileName);
        string weights = File.Exists(safetensors) ? safetensors
            : File.Exists(pickle) ? pickle
            : throw new FileNotFoundException($"VAE folder '{folder}' has neither {SafetensorsFileName} nor {PickleFileName}", safetensors);

        // Built outside the dispose scope below: the parameters must outlive it.
        var vae = new AutoencoderKL(config);
        try
        {
            using var scope = NewDisposeScope();
            var source = weights == safetensors ? ReadSafetensors(weights) : ReadPickle(weights);
            vae.LoadWeights(source, $"VAE {folder}");
        }
        catch
        {
            vae.Dispose();
            throw;
        }
        return vae;
    }

    /// <summary>Copies a diffusers-style state dict into this model (old attention names and 1×1-conv attention
    /// weights are converted first), strictly: a missing, extra or misshapen key throws
    /// <see cref="StateDictMismatchException"/> naming it. Leaves the model in eval mode. The source is not disposed.</summary>
    public void LoadWeights(IReadOnlyDictionary<string, Tensor> source, string what = "VAE")
    {
        using var scope = NewDisposeScope(); // owns the reshaped copies
        StateDict.LoadStrict(this, NormalizeKeys(source, what), what);
        eval();
    }

    /// <summary>Maps the pre-0.14 diffusers attention names (<c>query</c>, <c>key</c>, <c>value</c>, <c>proj_attn</c>)
    /// to the current ones and flattens attention weights stored as 1×1 convs ([C, C, 1, 1]) to Linear shape.</summary>
    public static Dictionary<string, Tensor> NormalizeKeys(IReadOnlyDictionary<string, Tensor> source, string what = "VAE")
    {
        var result = new Dictionary<string, Tensor>(source.Count);
        var origin = new Dictionary<string, string>(source.Count); // normalized name → key in the file
        foreach (var (key, tensor) in source)
        {
            string name = LegacyAttentionName().Replace(key, m => m.Groups[1].Value + m.Groups[2].Value switch
            {
                "query" => "to_q",
                "key" => "to_k",
                "value" => "to_v",
                _ => "to_out.0",
            } + m.Groups[3].Value);
            var value = tensor;
            // Some converted LDM checkpoints keep q/k/v/out as 1×1 conv kernels; the math is the same Linear.
            if (AttentionWeight().IsMatch(name) && value.dim() == 4 && value.shape[2] == 1 && value.shape[3] == 1)
                value = value.reshape(value.shape[0], value.shape[1]);
            if (!origin.TryAdd(name, key))
                throw new StateDictMismatchException(
                    $"{what}: '{origin[name]}' and '{key}' both map to '{name}' (old and new attention names mixed)");
            result[name] = value;
        }
        return result;
    }

    private static Dictionary<string, Tensor> ReadSafetensors(string path)
    {
        try
        {
            return Safetensors.LoadStateDict(path);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"VAE weights '{path}' could not be read as safetensors: {e.Message}", e);
        }
    }

    private static Dictionary<string, Tensor> ReadPickle(string path)
    {
        Hashtable table;
        try
        {
            table = PyTorchUnpickler.UnpickleStateDict(path);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InvalidDataException($"VAE weights '{path}' could not be read as a PyTorch state dict: {e.Message}", e);
        }
        var dict = new Dictionary<string, Tensor>(table.Count);
        foreach (DictionaryEntry entry in table)
        {
            if (entry.Key is not string key || entry.Value is not Tensor tensor)
                throw new InvalidDataException($"VAE weights '{path}': entry '{entry.Key}' is not a named tensor (expected a plain state dict)");
            dict[key] = tensor;
        }
        return dict;
    }

    [GeneratedRegex(@"^(.*\.attentions\.\d+\.)(query|key|value|proj_attn)(\.(?:weight|bias))$")]
    private static partial Regex LegacyAttentionName();

    [GeneratedRegex(@"\.attentions\.\d+\.(to_q|to_k|to_v|to_out\.0)\.weight$")]
    private static partial Regex AttentionWeight();
}
