using System.Text.Json;
using System.Text.Json.Nodes;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>Writes a served model folder from a training run: model.json + model.safetensors (EMA), and optionally
/// a <c>.pt</c> with <c>{"model", "ema"}</c> that the official code's <c>find_model</c> reads.</summary>
public static class ModelExport
{
    public const string ManifestFile = "model.json", WeightsFile = "model.safetensors";

    /// <summary>What a distilled student's manifest says beyond the architecture: its teacher and the sampling it was
    /// distilled for (its defaults on the server).</summary>
    /// <param name="Teacher">The teacher's name; <paramref name="TeacherFolder"/> where it was loaded from.</param>
    /// <param name="Vae">The teacher's VAE folder for a latent model; null in pixel space.</param>
    public sealed record Distilled(string Teacher, string TeacherFolder, SamplingOptions Sampling, string? Vae)
    {
        /// <summary>What a distillation's export says, from its settings and its teacher's manifest (a student decodes
        /// with its teacher's VAE); the train verb, the admin API and the export verb all write it.</summary>
        public static Distilled Of(DistillationSettings settings, ModelManifest teacher) =>
            new(teacher.Name, Path.GetFullPath(settings.Teacher), settings.StudentSampling(DefaultCfgScale), teacher.VaePath);

        /// <summary>The guidance scale a student's manifest names as its default: the server's (4).</summary>
        public const double DefaultCfgScale = 4.0;
    }

    /// <param name="vae">The VAE folder of a latent model (written as an absolute path, so the export can move
    /// without the VAE); null for a pixel-space model.</param>
    /// <returns>The paths written.</returns>
    public static IReadOnlyList<string> Write(string folder, string name, DiTConfig config, DiT ema, DiT? model,
        IReadOnlyList<string>? classNames, string? ptFile = null, string? vae = null, Distilled? distilled = null)
    {
        Directory.CreateDirectory(folder);
        var written = new List<string>();
        using (var scope = NewDisposeScope())
        {
            var emaSd = StateOf(ema);
            string weights = Path.Combine(folder, WeightsFile);
            AtomicFile.WriteVia(weights, tmp => CheckpointFile.SaveSafetensors(tmp, emaSd));
            written.Add(weights);
            if (ptFile is not null && model is not null)
            {
                string pt = Path.Combine(folder, ptFile);
                var nested = new Dictionary<string, IReadOnlyDictionary<string, Tensor>> { ["model"] = StateOf(model), ["ema"] = emaSd };
                AtomicFile.WriteVia(pt, tmp => CheckpointFile.SavePickle(tmp, nested));
                written.Add(pt);
            }
        }
        string manifest = Path.Combine(folder, ManifestFile);
        AtomicFile.WriteVia(manifest,
            tmp => File.WriteAllText(tmp,
                Manifest(name, config, classNames, vae, distilled).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"));
        written.Add(manifest);
        return written;
    }

    /// <summary>The model.json in the fixtures README's format: <c>vae</c> is the VAE folder of a latent model, or null
    /// for a pixel-space one.</summary>
    public static JsonObject Manifest(string name, DiTConfig config, IReadOnlyList<string>? classNames, string? vae = null, Distilled? distilled = null)
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
            ["vae"] = vae is null ? null : Path.GetFullPath(vae),
        };
        if (config.Conditioning != Conditioning.AdaLNZero) root["conditioning"] = ConditioningNames.ToName(config.Conditioning);
        if (config.GuidanceConditioned) root["guidance_conditioned"] = true;
        if (distilled is not null)
        {
            root["distilled_from"] = new JsonObject { ["name"] = distilled.Teacher, ["folder"] = distilled.TeacherFolder };
            var o = distilled.Sampling;
            root["defaults"] = new ModelDefaults(o.Sampler.Name(), o.Steps, o.Order, o.Spacing?.Name(), o.CfgScale).ToJson();
        }
        if (classNames is not null) root["class_names"] = new JsonArray(classNames.Select(n => (JsonNode)n).ToArray());
        return root;
    }

    private static Dictionary<string, Tensor> StateOf(DiT model) =>
        model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
}
