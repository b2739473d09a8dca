using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>What a checkpoint says about its run besides the tensors; enough to rebuild the trainer.</summary>
public sealed record TrainingRunInfo
{
    public long Step { get; init; }
    public required DiTConfig Config { get; init; }
    public required TrainingOptions Options { get; init; }
    /// <summary>Name of the exported model.</summary>
    public string? Name { get; init; }
    /// <summary>Dataset folder the run trains on.</summary>
    public string? Dataset { get; init; }
    /// <summary>Side the dataset images were zero-padded to, if any.</summary>
    public int? PadTo { get; init; }
    /// <summary>"idx" (MNIST layout) or "image-folder" (one subfolder per class).</summary>
    public string DatasetKind { get; init; } = "idx";
    /// <summary>Image side for an image-folder dataset (center crop + resize to it).</summary>
    public int? ImageSize { get; init; }
    /// <summary>Channels for an image-folder dataset (1 or 3).</summary>
    public int? Channels { get; init; }
    public IReadOnlyList<string>? ClassNames { get; init; }
    /// <summary>The VAE and scaling of a latent run; null for a pixel-space run (and in checkpoints from before latent training).</summary>
    public LatentSettings? Latent { get; init; }
    /// <summary>What a distillation run distils (no dataset then); null for training on images.</summary>
    public DistillationSettings? Distillation { get; init; }
    /// <summary>Training wall time summed over all sessions of the run.</summary>
    public double ElapsedSeconds { get; init; }
}

/// <summary>Whole training state in one file, written atomically: model, EMA, AdamW state, step, generator state, run info.</summary>
/// <remarks>The file is written to <c>path.tmp</c>, flushed to disk, then renamed over <c>path</c>: a rename within a
/// folder is atomic, so a kill at any moment leaves either the previous checkpoint or the new one, never half of one.
/// Layout: magic, format version, run-info JSON, model, EMA (TorchSharp module format), optimizer state,
/// generator state, end marker (a truncated file fails to load with a clear message).</remarks>
public static class TrainingCheckpoint
{
    private const string Magic = "DiTTRAIN", EndMarker = "DiTEND";
    private const int FormatVersion = 1;

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter() },
    };

    public static void Save(string path, Trainer trainer, TrainingRunInfo info)
    {
        AtomicFile.Write(path, stream =>
        {
            using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            w.Write(Magic);
            w.Write(FormatVersion);
            w.Write(JsonSerializer.Serialize(info with { Step = trainer.Step }, Json));
            trainer.Model.save(w);
            trainer.Ema.Model.save(w);
            trainer.Optimizer.save_state_dict(w);
            using var state = trainer.Generator.get_state();
            var bytes = state.data<byte>().ToArray();
            w.Write(bytes.Length);
            w.Write(bytes);
            w.Write(EndMarker);
        });
    }

    /// <summary>The run info alone (to rebuild a trainer of the right shape before <see cref="Restore"/>).</summary>
    public static TrainingRunInfo ReadInfo(string path)
    {
        using var r = Open(path);
        return ReadHeader(r, path);
    }

    /// <summary>Loads every tensor and the step into <paramref name="trainer"/>, which must have the checkpoint's config.</summary>
    public static TrainingRunInfo Restore(string path, Trainer trainer)
    {
        using var r = Open(path);
        var info = ReadHeader(r, path);
        if (info.Config != trainer.Config)
            throw new InvalidDataException($"{path}: checkpoint config {info.Config} differs from the trainer's {trainer.Config}");
        try
        {
            trainer.Model.load(r, strict: true);
            trainer.Ema.Model.load(r, strict: true);
            trainer.Optimizer.load_state_dict(r);
            int n = r.ReadInt32();
            var bytes = r.ReadBytes(n);
            if (bytes.Length != n) throw new EndOfStreamException();
            using (var state = tensor(bytes, ScalarType.Byte))
                trainer.Generator.set_state(state);
            if (r.ReadString() != EndMarker) throw new InvalidDataException($"{path}: end marker missing (file damaged)");
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"{path}: checkpoint is truncated");
        }
        foreach (var p in trainer.Ema.Model.parameters()) p.requires_grad = false;
        trainer.Ema.Model.eval();
        trainer.Step = info.Step;
        return info;
    }

    /// <summary>The run info with the training and EMA models alone (for export; no dataset or optimizer needed).</summary>
    public static (TrainingRunInfo Info, DiT Model, DiT Ema) LoadModels(string path)
    {
        using var r = Open(path);
        var info = ReadHeader(r, path);
        // The models come first in the file, so a file cut off in the optimizer state would load them; it is damaged all
        // the same (a copy or a disk that failed), and serving or exporting from it is refused like any damaged file.
        if (!EndsWithMarker(r.BaseStream)) throw new InvalidDataException($"{path}: checkpoint is truncated (end marker missing)");
        var model = new DiT(info.Config);
        var ema = new DiT(info.Config);
        try
        {
            model.load(r, strict: true);
            ema.load(r, strict: true);
        }
        catch (EndOfStreamException)
        {
            model.Dispose();
            ema.Dispose();
            throw new InvalidDataException($"{path}: checkpoint is truncated");
        }
        model.eval();
        ema.eval();
        return (info, model, ema);
    }

    private static bool EndsWithMarker(Stream s)
    {
        var marker = new MemoryStream();
        using (var w = new BinaryWriter(marker, Encoding.UTF8, leaveOpen: true)) w.Write(EndMarker); // length-prefixed, as Save writes it
        var expected = marker.ToArray();
        if (s.Length < expected.Length) return false;
        long at = s.Position;
        s.Seek(-expected.Length, SeekOrigin.End);
        var tail = new byte[expected.Length];
        s.ReadExactly(tail);
        s.Position = at;
        return tail.AsSpan().SequenceEqual(expected);
    }

    private static BinaryReader Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint not found: {path}", path);
        return new BinaryReader(File.OpenRead(path), Encoding.UTF8);
    }

    private static TrainingRunInfo ReadHeader(BinaryReader r, string path)
    {
        try
        {
            if (r.ReadString() != Magic) throw new InvalidDataException($"{path}: not a DiTServer training checkpoint");
            int version = r.ReadInt32();
            if (version != FormatVersion) throw new InvalidDataException($"{path}: checkpoint format {version} is not supported (expected {FormatVersion})");
            return JsonSerializer.Deserialize<TrainingRunInfo>(r.ReadString(), Json)
                   ?? throw new InvalidDataException($"{path}: empty run info");
        }
        catch (Exception e) when (e is EndOfStreamException or JsonException or IOException and not FileNotFoundException)
        {
            throw new InvalidDataException($"{path}: damaged checkpoint header ({e.Message})");
        }
    }
}
