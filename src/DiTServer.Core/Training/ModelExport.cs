using System.Text.Json;
using System.Text.Json.Nodes;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>Writes a served model folder from a training run: model.json + model.safetensors (EMA), and optionally
/// a <c>.pt</c> with <c>{"model", "ema"}</c> that the official code's <c>find_model</c> reads.</summary>
public static class ModelExport
{
    public const string ManifestFile = "model.json", WeightsFile = "model.safetensors";

    /// <returns>The paths written.</returns>
    public static IReadOnlyList<string> Write(string folder, string name, DiTConfig config, DiT ema, DiT? model,
        IReadOnlyList<string>? classNames, string? ptFile = null)
    {
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        using (var scope = NewDisposeScope())
        {
            var emaSd = StateOf(ema);
            string weights = Path.Combine(folder, WeightsFile);
            Atomic(weights, tmp => CheckpointFile.SaveSafetensors(tmp, emaSd));
            written.Add(weights);
            if (ptFile is not null && model is not null)
            {
                string pt = Path.Combine(folder, ptFile);
                var nested = new Dictionary<string, IReadOnlyDictionary<string, Tensor>> { ["model"] = StateOf(model), ["ema"] = emaSd };
                Atomic(pt, tmp => CheckpointFile.SavePickle(tmp, nested));
                written.Add(pt);
            }
        }
        string manifest = Path.Combine(folder, ManifestFile);
        Atomic(manifest, tmp => File.WriteAllText(tmp, Manifest(name, config, classNames).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
        written.Add(manifest);
        return written;
    }

    /// <summary>The model.json of a pixel-space model (<c>vae: null</c>) in the fixtures README's format.</summary>
    public static JsonObject Manifest(string name, DiTConfig config, IReadOnlyList<string>? classNames)
    {
        var root = new JsonObject
        {
            ["name"] = name,
            ["architecture"] = new JsonObject
            {
                ["depth"] = config.Depth,
                ["hidden_size"] = config.HiddenSize,
                ["num_heads"] = config.NumHeads,
                ["patch_size"] = config.PatchSize,
                ["mlp_ratio"] = config.MlpRatio,
            },
            ["input_size"] = config.InputSize,
            ["in_channels"] = config.InChannels,
            ["num_classes"] = config.NumClasses,
            ["learn_sigma"] = config.LearnSigma,
            ["class_dropout_prob"] = config.ClassDropoutProb,
            ["weights"] = WeightsFile,
            ["vae"] = null,
        };
        if (config.Conditioning != Conditioning.AdaLNZero) root["conditioning"] = ConditioningNames.ToName(config.Conditioning);
        if (classNames is not null) root["class_names"] = new JsonArray(classNames.Select(n => (JsonNode)n).ToArray());
        return root;
    }

    private static Dictionary<string, Tensor> StateOf(DiT model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);

    private static void Atomic(string path, Action<string> write)
    {
        string tmp = path + ".tmp";
        write(tmp);
        File.Move(tmp, path, overwrite: true);
    }
}
