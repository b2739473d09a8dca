using System.Text.Json.Serialization;
using DiTServer.Core.Training;

namespace DiTServer.Api.Admin;

/// <summary>Body of <c>POST /v1/admin/training/jobs</c>.</summary>
public sealed record TrainingJobRequest
{
    /// <summary>The OpenAPI example: a small model trained from scratch on an IDX folder.</summary>
    public const string Example = """{"dataset": "fashion-mnist", "output": "run-1", "model": """ +
        """{"hidden_size": 128, "depth": 6, "num_heads": 4, "patch_size": 4}, "steps": 1000, "batch_size": 64}""";

    /// <summary>Dataset folder relative to <c>Training:DataRoot</c>: IDX files (MNIST / Fashion-MNIST layout), or one
    /// subfolder of images per class (then <see cref="ImageSize"/> is required).</summary>
    [JsonPropertyName("dataset")] public string? Dataset { get; init; }
    /// <summary>Side the images of a class-subfolder dataset are center-cropped and resized to (as train.py).</summary>
    [JsonPropertyName("image_size")] public int? ImageSize { get; init; }
    /// <summary>1 (grayscale) or 3 (RGB) for a class-subfolder dataset; default 3.</summary>
    [JsonPropertyName("channels")] public int? Channels { get; init; }
    /// <summary>Run folder, relative to <c>Training:OutputRoot</c>; must not already hold a checkpoint.</summary>
    [JsonPropertyName("output")] public string? Output { get; init; }
    /// <summary>"served" fine-tunes the served model's weights file; otherwise a new model of <see cref="Model"/>.</summary>
    [JsonPropertyName("init_from")] public string? InitFrom { get; init; }
    /// <summary>Diffusers AutoencoderKL folder, relative to <c>Training:DataRoot</c>: train in its latent space.
    /// With <c>init_from: "served"</c> the served model's own VAE is used and this must be absent.</summary>
    [JsonPropertyName("vae")] public string? Vae { get; init; }
    [JsonPropertyName("model")] public TrainingModelSpec? Model { get; init; }
    [JsonPropertyName("name")] public string? Name { get; init; }
    [JsonPropertyName("class_names")] public IReadOnlyList<string>? ClassNames { get; init; }
    // Absent or null means the default (Options() below): null is "absent" for every optional field.
    [JsonPropertyName("steps")] public long? Steps { get; init; }
    [JsonPropertyName("batch_size")] public int? BatchSize { get; init; }
    [JsonPropertyName("learning_rate")] public double? LearningRate { get; init; }
    [JsonPropertyName("ema_decay")] public double? EmaDecay { get; init; }
    [JsonPropertyName("ema_warmup")] public bool? EmaWarmup { get; init; }
    [JsonPropertyName("seed")] public long? Seed { get; init; }
    [JsonPropertyName("class_dropout_prob")] public double? ClassDropoutProb { get; init; }
    [JsonPropertyName("checkpoint_every")] public int? CheckpointEvery { get; init; }
    [JsonPropertyName("log_every")] public int? LogEvery { get; init; }

    /// <summary>The training options the request asks for, defaults filled in (1000 steps of batch 64, lr 1e-4, EMA 0.9999,
    /// a checkpoint every 500 steps and a log line every 50).</summary>
    public TrainingOptions Options() => new()
    {
        Steps = Steps ?? 1000, BatchSize = BatchSize ?? 64, LearningRate = LearningRate ?? 1e-4, EmaDecay = EmaDecay ?? 0.9999,
        EmaWarmup = EmaWarmup ?? false, Seed = Seed ?? 0, LogEvery = LogEvery ?? 50, CheckpointEvery = CheckpointEvery ?? 500,
    };

    /// <summary>Label dropout of a new model (train.py's 0.1 by default).</summary>
    public double EffectiveClassDropoutProb => ClassDropoutProb ?? 0.1;
}

/// <summary>Architecture of a new model trained from scratch.</summary>
public sealed record TrainingModelSpec
{
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; } = 128;
    [JsonPropertyName("depth")] public int Depth { get; init; } = 6;
    [JsonPropertyName("num_heads")] public int NumHeads { get; init; } = 4;
    [JsonPropertyName("patch_size")] public int PatchSize { get; init; } = 4;
    [JsonPropertyName("conditioning")] public string Conditioning { get; init; } = "adaLN-Zero";
    [JsonPropertyName("learn_sigma")] public bool LearnSigma { get; init; } = true;
}
