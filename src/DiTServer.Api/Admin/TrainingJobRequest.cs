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
    /// <summary>"served": distil a few-step, guidance-conditioned student from the served model instead of training on a
    /// dataset (docs/training.md); then <see cref="Dataset"/>, <see cref="InitFrom"/>, <see cref="Vae"/> and <see cref="Model"/> must be absent.</summary>
    public string? DistillFrom { get; init; }
    /// <summary>Distillation: model calls per image of the student, 1, 2 or 4 (default 4).</summary>
    public int? StudentSteps { get; init; }
    /// <summary>Distillation: UniPC steps of each teacher trajectory, a multiple of <see cref="StudentSteps"/> (default 20).</summary>
    public int? TeacherSteps { get; init; }
    /// <summary>Distillation: teacher trajectories to learn from (default 2048).</summary>
    public int? Trajectories { get; init; }
    /// <summary>Distillation: [lo, hi], the guidance scales the student learns (default [1, 6]).</summary>
    public double[]? GuidanceRange { get; init; }
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

    /// <summary>The distillation the request asks for, defaults filled in, from the teacher at <paramref name="teacherFolder"/>.</summary>
    public DistillationSettings Distillation(string teacherFolder)
    {
        var defaults = new DistillationSettings { Teacher = teacherFolder };
        return defaults with
        {
            StudentSteps = StudentSteps ?? defaults.StudentSteps, TeacherSteps = TeacherSteps ?? defaults.TeacherSteps,
            Trajectories = Trajectories ?? defaults.Trajectories,
            MinGuidance = GuidanceRange is [var lo, _] ? lo : defaults.MinGuidance, MaxGuidance = GuidanceRange is [_, var hi] ? hi : defaults.MaxGuidance,
        };
    }
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
