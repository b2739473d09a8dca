using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using DiTServer.Core.Vae;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>What a latent cache was computed from; a cache whose key differs is recomputed, never reused.</summary>
public sealed record LatentCacheKey(string DatasetSha256, int Count, int ImageSize, int Channels, string VaeSha256, bool BothOrientations);

/// <summary>Encodes a dataset with the VAE once and keeps the posterior mean and std of every image in a file next to
/// the run's checkpoint (<see cref="FileName"/>), so training steps never run the encoder.</summary>
/// <remarks>Encoding every batch, as train.py does on a GPU, would cost more than the DiT step itself on a CPU; the
/// posterior is the same each time, so only its sample (drawn per step by <see cref="LatentDataset"/>) varies.
/// Layout: magic, format version, key JSON, orientations, N, C, h, w, then float32 mean, std (and the flipped pair),
/// end marker. Written to a temp file and renamed, as checkpoints are.</remarks>
public static class LatentCache
{
    public const string FileName = "latents.cache";
    private const string Magic = "DiTLATENTS", EndMarker = "DiTEND";
    private const int FormatVersion = 1, EncodeBatch = 32, HashBatch = 1024;

    /// <summary>The dataset's latents: read from <paramref name="path"/> when its key matches the dataset and VAE,
    /// else encoded (the VAE loaded only then) and written there.</summary>
    /// <param name="log">Receives one line per phase (cache hit, encoding progress, written).</param>
    public static LatentDataset LoadOrEncode(string path, ITrainingDataset images, LatentSettings settings, Action<string>? log = null)
    {
        var vaeConfig = VaeConfig.FromFolder(settings.Vae);
        LatentShape.For(vaeConfig, images.ImageSize, images.Channels);
        var (datasetSha, labels) = Fingerprint(images);
        var key = new LatentCacheKey(datasetSha, images.Count, images.ImageSize, images.Channels, settings.VaeSha256, images.HorizontalFlip);
        try
        {
            if (TryRead(path, key) is { } cached)
            {
                log?.Invoke($"latents: read {images.Count} cached encodings from {path}");
                return new LatentDataset(cached.Mean, cached.Std, cached.FlippedMean, cached.FlippedStd, labels, images.NumClasses, settings.ScalingFactor);
            }
            using var vae = AutoencoderKL.FromFolder(settings.Vae);
            int orientations = images.HorizontalFlip ? 2 : 1;
            log?.Invoke($"latents: encoding {images.Count} images × {orientations} orientation(s) with the VAE at {settings.Vae}");
            var (mean, std) = Encode(vae, images, flipped: false, Progress(log, "latents", images.Count));
            Tensor? fMean = null, fStd = null;
            if (images.HorizontalFlip) (fMean, fStd) = Encode(vae, images, flipped: true, Progress(log, "latents (flipped)", images.Count));
            Write(path, key, mean, std, fMean, fStd);
            log?.Invoke($"latents: wrote {path} ({new FileInfo(path).Length / 1e6:F1} MB)");
            return new LatentDataset(mean, std, fMean, fStd, labels, images.NumClasses, settings.ScalingFactor);
        }
        catch
        {
            labels.Dispose();
            throw;
        }
    }

    /// <summary>The VAE posterior (unscaled mean and std, each (N, latent, h, w)) of every image, in batches of
    /// <see cref="EncodeBatch"/> without gradients; <paramref name="flipped"/> encodes the mirrored images.</summary>
    public static (Tensor Mean, Tensor Std) Encode(AutoencoderKL vae, ITrainingDataset images, bool flipped, Action<int>? progress = null)
    {
        var (side, channels) = LatentShape.For(vae.Config, images.ImageSize, images.Channels);
        long n = images.Count;
        var mean = empty(new long[] { n, channels, side, side });
        var std = empty(new long[] { n, channels, side, side });
        using var noGrad = no_grad();
        for (long from = 0; from < n; from += EncodeBatch)
        {
            using var scope = NewDisposeScope();
            long count = Math.Min(EncodeBatch, n - from);
            var (x, _) = images.Batch(arange(from, from + count, dtype: ScalarType.Int64));
            if (flipped) x = x.flip(3);
            if (x.shape[1] == 1 && vae.Config.InChannels == 3) x = x.expand(-1, 3, -1, -1);
            var (m, s, _) = vae.Encode(x);
            mean.narrow(0, from, count).copy_(m);
            std.narrow(0, from, count).copy_(s);
            progress?.Invoke((int)(from + count));
        }
        return (mean, std);
    }

    /// <summary>SHA-256 of every image (as the float32 model input) and label, and the labels (N,) int64.</summary>
    private static (string Sha256, Tensor Labels) Fingerprint(ITrainingDataset images)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var labels = empty(new long[] { images.Count }, dtype: ScalarType.Int64);
        for (long from = 0; from < images.Count; from += HashBatch)
        {
            using var scope = NewDisposeScope();
            long count = Math.Min(HashBatch, images.Count - from);
            var (x, y) = images.Batch(arange(from, from + count, dtype: ScalarType.Int64));
            hash.AppendData(x.contiguous().bytes);
            hash.AppendData(y.contiguous().bytes);
            labels.narrow(0, from, count).copy_(y);
        }
        return (Convert.ToHexStringLower(hash.GetHashAndReset()), labels);
    }

    private static Action<int>? Progress(Action<string>? log, string what, int total)
    {
        if (log is null) return null;
        int next = 0;
        return done =>
        {
            if (done < next && done < total) return;
            log($"{what}: {done}/{total} encoded");
            next = done + Math.Max(1, total / 10);
        };
    }

    private static void Write(string path, LatentCacheKey key, Tensor mean, Tensor std, Tensor? fMean, Tensor? fStd)
    {
        AtomicFile.Write(path, stream =>
        {
            using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            w.Write(Magic);
            w.Write(FormatVersion);
            w.Write(JsonSerializer.Serialize(key));
            w.Write(fMean is null ? 1 : 2);
            foreach (long d in mean.shape) w.Write(d);
            foreach (var t in fMean is null ? new[] { mean, std } : new[] { mean, std, fMean, fStd! })
                w.Write(t.contiguous().bytes);
            w.Write(EndMarker);
        });
    }

    /// <summary>The cached posterior when the file exists and was made for <paramref name="key"/>; null otherwise
    /// (missing, other key, older format, damaged: all mean "encode again").</summary>
    private static (Tensor Mean, Tensor Std, Tensor? FlippedMean, Tensor? FlippedStd)? TryRead(string path, LatentCacheKey key)
    {
        if (!File.Exists(path)) return null;
        var tensors = new List<Tensor>();
        try
        {
            using var r = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
            if (r.ReadString() != Magic || r.ReadInt32() != FormatVersion) return null;
            if (JsonSerializer.Deserialize<LatentCacheKey>(r.ReadString()) != key) return null;
            int orientations = r.ReadInt32();
            var shape = new[] { r.ReadInt64(), r.ReadInt64(), r.ReadInt64(), r.ReadInt64() };
            if (orientations != (key.BothOrientations ? 2 : 1) || shape[0] != key.Count) return null;
            for (int i = 0; i < 2 * orientations; i++)
            {
                var t = empty(shape);
                tensors.Add(t);
                r.BaseStream.ReadExactly(t.bytes);
            }
            if (r.ReadString() != EndMarker) throw new InvalidDataException("end marker missing");
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException or JsonException or IOException)
        {
            foreach (var t in tensors) t.Dispose();
            return null; // a torn or foreign file: the encoder makes a new one
        }
        return tensors.Count == 2 ? (tensors[0], tensors[1], null, null) : (tensors[0], tensors[1], tensors[2], tensors[3]);
    }
}
