using static TorchSharp.torch;

namespace DiTServer.Core.Checkpoints;

/// <summary>Raised when weights do not fit a module; the message names the key and both shapes.</summary>
public sealed class StateDictMismatchException(string message) : Exception(message);

/// <summary>Strict copying of named tensors into a module, with errors that name the offending key.</summary>
public static class StateDict
{
    /// <summary>Copies every tensor of <paramref name="source"/> into <paramref name="module"/>'s parameters and
    /// buffers. Fails before copying anything when a key is missing, extra, or has another shape.</summary>
    public static void LoadStrict(nn.Module module, IReadOnlyDictionary<string, Tensor> source, string what)
    {
        var target = module.state_dict();
        var missing = target.Keys.Where(k => !source.ContainsKey(k)).ToList();
        var unexpected = source.Keys.Where(k => !target.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing {missing.Count} key(s): {Preview(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected {unexpected.Count} key(s): {Preview(unexpected)}");
            throw new StateDictMismatchException($"{what}: weights do not match the architecture; {string.Join("; ", parts)}");
        }
        foreach (var (key, dst) in target)
        {
            var src = source[key];
            if (!src.shape.SequenceEqual(dst.shape))
                throw new StateDictMismatchException(
                    $"{what}: '{key}' has shape [{string.Join(", ", src.shape)}] in the file but the model expects [{string.Join(", ", dst.shape)}]");
        }
        using var _ = no_grad();
        foreach (var (key, dst) in target)
        {
            // copy_ converts the dtype itself. A src.to(dtype) here was a new tensor handle per key, never disposed: on
            // the serving worker every activation added one live tensor per weight, each keeping the source's storage
            // (the new weights, gigabytes for DiT-XL/2) alive until the GC happened to finalize it.
            dst.copy_(source[key]);
        }
    }

    private static string Preview(List<string> keys) =>
        string.Join(", ", keys.Take(8)) + (keys.Count > 8 ? $", … ({keys.Count - 8} more)" : "");
}
