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
    public string? Dataset { get; init; }
    /// <summary>Side the images of a class-subfolder dataset are center-cropped and resized to (as train.py).</summary>
    public int? ImageSize { get; init; }
    /// <summary>1 (grayscale) or 3 (RGB) for a class-subfolder dataset; default 3.</summary>
    public int? Channels { get; init; }
    /// <summary>Run folder, relative to <c>Training:OutputRoot</c>; must not already hold a checkpoint.</summary>
    public string? Output { get; init; }
    /// <summary>"served" fine-tunes the served model's weights file; otherwise a new model of <see cref="Model"/>.</summary>
    public string? InitFrom { get; init; }
    /// <summary>Diffusers AutoencoderKL folder, relative to <c>Training:DataRoot</c>: train in its latent space.
    /// With <c>init_from: "served"</c> the served model's own VAE is used and this must be absent.</summary>
    public string? Vae { get; init; }
    public TrainingModelSpec? Model { get; init; }
    public string? Name { get; init; }
    public IReadOnlyList<string>? ClassNames { get; init; }
    // Absent or null means the default (Options() below): null is "absent" for every optional field.
    public long? Steps { get; init; }
    public int? BatchSize { get; init; }
    public double? LearningRate { get; init; }
    public double? EmaDecay { get; init; }
    public bool? EmaWarmup { get; init; }
    public long? Seed { get; init; }
    public double? ClassDropoutProb { get; init; }
    public int? CheckpointEvery { get; init; }
    public int? LogEvery { get; init; }

    /// <summary>The training options the request asks for, defaults filled in (1000 steps of batch 64, lr 1e-4, EMA 0.9999,
    /// a checkpoint every 500 steps and a log line every 50).</summary>
    public TrainingOptions Options() => new()
    {
        Steps = Steps ?? 1000, BatchSize = BatchSize ?? 64, LearningRate = LearningRate ?? 1e-4, EmaDecay = EmaDecay ?? 0.9999,
        EmaWarmup = EmaWarmup ?? false, Seed = Seed ?? 0, LogEvery = LogEvery ?? 50, CheckpointEvery = CheckpointEvery ?? 500,
    };

    /// <summary>Label dropout of a new model (train.py's 0.1 by default).</summary>
    /// <remarks>A method, not a property: as a property the contract listed it as a field (a read-only
    /// <c>effectiveClassDropoutProb</c> in the OpenAPI schema), and a body naming it beside a mistaken field reached its
    /// missing setter in JsonContract's diagnostic pass.</remarks>
    public double EffectiveClassDropoutProb() => ClassDropoutProb ?? 0.1;
}

/// <summary>Architecture of a new model trained from scratch.</summary>
public sealed record TrainingModelSpec
{
    public int HiddenSize { get; init; } = 128;
    public int Depth { get; init; } = 6;
    public int NumHeads { get; init; } = 4;
    public int PatchSize { get; init; } = 4;
    public string Conditioning { get; init; } = "adaLN-Zero";
    public bool LearnSigma { get; init; } = true;
}
