using System.Security.Cryptography;
using DiTServer.Core.Vae;

namespace DiTServer.Core.Training;

/// <summary>A content hash of a diffusers VAE folder (config.json, then the weights file that
/// <see cref="AutoencoderKL.FromFolder"/> would load): a path alone cannot tell a swapped or retrained VAE.</summary>
public static class VaeFingerprint
{
    public static string Of(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"VAE folder '{folder}' does not exist");
        string config = Path.Combine(folder, "config.json");
        string safetensors = Path.Combine(folder, AutoencoderKL.SafetensorsFileName);
        string pickle = Path.Combine(folder, AutoencoderKL.PickleFileName);
        if (!File.Exists(config)) throw new FileNotFoundException($"VAE folder '{folder}' has no config.json", config);
        string weights = File.Exists(safetensors) ? safetensors
            : File.Exists(pickle) ? pickle
            : throw new FileNotFoundException($"VAE folder '{folder}' has neither {AutoencoderKL.SafetensorsFileName} nor {AutoencoderKL.PickleFileName}",
                safetensors);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var file in new[] { config, weights })
        {
            using var stream = File.OpenRead(file);
            var buffer = new byte[1 << 20];
            int n;
            while ((n = stream.Read(buffer)) > 0) hash.AppendData(buffer, 0, n);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
