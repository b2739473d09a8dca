using System.Text.Json;
using System.Text.Json.Serialization;

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
    [JsonPropertyName("steps")] public long Steps { get; init; } = 1000;
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 64;
    [JsonPropertyName("learning_rate")] public double LearningRate { get; init; } = 1e-4;
    [JsonPropertyName("ema_decay")] public double EmaDecay { get; init; } = 0.9999;
    [JsonPropertyName("ema_warmup")] public bool EmaWarmup { get; init; }
    [JsonPropertyName("seed")] public long Seed { get; init; }
    [JsonPropertyName("class_dropout_prob")] public double ClassDropoutProb { get; init; } = 0.1;
    [JsonPropertyName("checkpoint_every")] public int CheckpointEvery { get; init; } = 500;
    [JsonPropertyName("log_every")] public int LogEvery { get; init; } = 50;

    public static readonly JsonSerializerOptions Json = new()
    {
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.Strict,
    };
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
