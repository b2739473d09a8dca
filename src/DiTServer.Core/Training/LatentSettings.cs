using DiTServer.Core.Vae;

namespace DiTServer.Core.Training;

/// <summary>How a latent run turns images into model inputs; stored in the checkpoint's run info so a resume
/// uses the same VAE (checked by content hash) and the same scaling.</summary>
public sealed record LatentSettings
{
    /// <summary>Absolute path of the diffusers AutoencoderKL folder the images are encoded with (and the export decodes with).</summary>
    public required string Vae { get; init; }
    /// <summary>SHA-256 (hex) of the VAE's config.json and weights file (<see cref="VaeFingerprint"/>).</summary>
    public required string VaeSha256 { get; init; }
    /// <summary>The VAE config's scaling_factor: model inputs are <c>latent_dist.sample() · ScalingFactor</c>, as train.py.</summary>
    public required double ScalingFactor { get; init; }

    /// <summary>Settings for a new run on the VAE in <paramref name="folder"/>, with its config (read and checked).</summary>
    /// <exception cref="DirectoryNotFoundException">No such folder.</exception>
    /// <exception cref="FileNotFoundException">config.json or the weights are missing.</exception>
    /// <exception cref="InvalidDataException">The config is not an SD-style AutoencoderKL.</exception>
    public static (LatentSettings Settings, VaeConfig Config) ForFolder(string folder)
    {
        folder = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"VAE folder '{folder}' does not exist");
        var config = VaeConfig.FromFolder(folder);
        var settings = new LatentSettings { Vae = folder, VaeSha256 = VaeFingerprint.Of(folder), ScalingFactor = config.ScalingFactor };
        return (settings, config);
    }

    /// <summary>Checks that the VAE folder still holds the VAE the run started with: resuming on other latents
    /// would silently train a different task.</summary>
    /// <exception cref="InvalidDataException">The folder's content hash differs.</exception>
    public void VerifyUnchanged()
    {
        string now = VaeFingerprint.Of(Vae);
        if (now != VaeSha256)
            throw new InvalidDataException($"the VAE at {Vae} is not the one this run was trained with (sha256 {now[..12]}… ≠ {VaeSha256[..12]}…); " +
                $"resuming with a different VAE is not possible");
    }
}
