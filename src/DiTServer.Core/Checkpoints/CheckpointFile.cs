using System.Collections;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace DiTServer.Core.Checkpoints;

/// <summary>Reads and writes named-tensor files: PyTorch pickles (.pt/.pth/.bin) and .safetensors.</summary>
/// <remarks>Parsing is TorchSharp.PyBridge's. Which of its calls work on which files is in
/// shared/notes/torchsharp-on-debian.md: <c>load_py</c> fails on train.py checkpoints, <c>UnpickleStateDict</c> works.</remarks>
public static class CheckpointFile
{
    /// <summary>The state dict in <paramref name="path"/>. For a train.py checkpoint
    /// (<c>{"model","ema","opt","args"}</c>) this is <c>ema</c>, as the official <c>find_model</c> serves.</summary>
    public static Dictionary<string, Tensor> LoadStateDict(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"weights file not found: {path}", path);
        try
        {
            if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
                return Safetensors.LoadStateDict(path);
            var root = PyTorchUnpickler.UnpickleStateDict(path);
            return SelectStateDict(root, path);
        }
        catch (Exception e) when (e is not InvalidDataException and not FileNotFoundException)
        {
            throw new InvalidDataException($"cannot read weights from {path}: {e.Message}", e);
        }
    }

    private static Dictionary<string, Tensor> SelectStateDict(Hashtable root, string path)
    {
        // train.py checkpoints keep the EMA weights under "ema": those are what gets served.
        foreach (var key in new[] { "ema", "state_dict", "model" })
            if (root[key] is Hashtable nested && nested.Count > 0 && nested.Values.Cast<object>().All(v => v is Tensor))
                return ToDictionary(nested, path);
        return ToDictionary(root, path);
    }

    private static Dictionary<string, Tensor> ToDictionary(Hashtable table, string path)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in table)
        {
            if (entry.Value is not Tensor t)
                throw new InvalidDataException(
                    $"{path} is not a state dict: entry '{entry.Key}' is a {entry.Value?.GetType().Name ?? "null"}, not a tensor " +
                    "(expected a torch.save(model.state_dict()) file or a train.py checkpoint with an 'ema' entry)");
            result[(string)entry.Key] = t;
        }
        return result;
    }

    /// <summary>Writes a .safetensors file (contiguous CPU copies, so any tensor layout works).</summary>
    public static void SaveSafetensors(string path, IReadOnlyDictionary<string, Tensor> tensors)
    {
        using var scope = NewDisposeScope();
        var dict = tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous());
        Safetensors.SaveStateDict(path, dict);
    }

    /// <summary>Writes a pickled dict that Python's <c>torch.load</c> reads; <paramref name="nested"/> entries
    /// become sub-dicts (e.g. <c>{"model": sd, "ema": sd}</c>).</summary>
    public static void SavePickle(string path, IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> nested)
    {
        using var scope = NewDisposeScope();
        var root = new Hashtable();
        foreach (var (name, sd) in nested)
        {
            var inner = new Hashtable();
            foreach (var (k, v) in sd) inner[k] = v.detach().cpu().contiguous();
            root[name] = inner;
        }
        PyTorchPickler.PickleStateDict(path, root);
    }

    /// <summary>Writes a plain state-dict pickle (the released DiT-XL-2-256x256.pt format).</summary>
    public static void SavePickle(string path, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        using var scope = NewDisposeScope();
        var root = new Hashtable();
        foreach (var (k, v) in stateDict) root[k] = v.detach().cpu().contiguous();
        PyTorchPickler.PickleStateDict(path, root);
    }
}
