using DiTServer.Core.Vae;

namespace DiTServer.Core.Training;

/// <summary>The DiT input a VAE makes of a dataset's images: latent channels × (image side / downsampling factor)².</summary>
public static class LatentShape
{
    /// <exception cref="ArgumentException">The images cannot be encoded by this VAE; one line saying why.</exception>
    public static (int Side, int Channels) For(VaeConfig vae, int imageSize, int imageChannels)
    {
        int f = vae.DownsamplingFactor;
        if (imageSize % f != 0)
            throw new ArgumentException($"image size {imageSize} is not divisible by the VAE's downsampling factor {f} (pad or resize the images to a " +
                $"multiple of {f}, e.g. {(imageSize / f + 1) * f})");
        // Grayscale images go in as gray RGB (the channel repeated): an SD VAE is RGB-only.
        if (imageChannels != vae.InChannels && !(imageChannels == 1 && vae.InChannels == 3))
            throw new ArgumentException($"the images have {imageChannels} channel(s) but the VAE takes {vae.InChannels}");
        return (imageSize / f, vae.LatentChannels);
    }
}
