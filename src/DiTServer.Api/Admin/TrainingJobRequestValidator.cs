using System.Linq.Expressions;
using System.Text;
using DiTServer.Core.Model;
using DiTServer.Core.Training;
using FluentValidation;

namespace DiTServer.Api.Admin;

/// <summary>The rules of <see cref="TrainingJobRequest"/>: every number and string of a training job is checked here,
/// at the door, before any job, folder or tensor exists, and refused with a 400 that names the field.</summary>
/// <remarks><c>steps: 1e15</c> and a 300-character <c>output</c> used to be answered 202 and then fail on the job's
/// thread (an endless run, a folder name the file system refuses). What the request alone cannot decide (the dataset's
/// files, the model's memory) is checked by <see cref="TrainingJobs.Start"/>, still before the 202.</remarks>
public sealed class TrainingJobRequestValidator : BodyValidator<TrainingJobRequest>
{
    /// <summary>Most optimizer steps of one job: 10 M, beyond the DiT paper's longest run (7 M for DiT-XL/2).</summary>
    public const long MaxSteps = 10_000_000;
    /// <summary>Largest batch a request may ask for; the memory estimate (<c>Training:MaxMemoryBytes</c>) is usually stricter.</summary>
    public const int MaxBatchSize = 65_536;
    /// <summary>Longest <c>output</c> in UTF-8 bytes: one file name's worth (NAME_MAX), so any form of it can be created.</summary>
    public const int MaxOutputBytes = 255;
    /// <summary>Most folders of an <c>output</c>: the depth to which runs are listed after a restart.</summary>
    public const int MaxOutputDepth = TrainingJobs.MaxRunDepth;
    /// <summary>Longest <c>dataset</c> or <c>vae</c> path in UTF-8 bytes.</summary>
    public const int MaxInputPathBytes = 1024;
    /// <summary>Longest <c>name</c> and class name.</summary>
    public const int MaxNameLength = 200;
    public const int MaxClassNames = 10_000;
    public const int MaxHiddenSize = 16_384;
    public const int MaxDepth = 1_024;
    public const int MaxPatchSize = 64;

    public static readonly TrainingJobRequestValidator Instance = new();

    private TrainingJobRequestValidator()
    {
        InputPath(x => x.Dataset, "dataset", required: false);
        RuleFor(x => x.Dataset).Must((x, d, c) => d is not null || x.DistillFrom is not null || Fields(c).Unreadable("dataset"))
            .WithExactMessage((_, _) => "'dataset' is required: a folder relative to Training:DataRoot (or distill_from: \"served\")")
            .OverridePropertyName("dataset");
        Distillation();
        Field(x => x.Output, v => $"output must be a folder name (a string), not {JsonText.Show(v)}")
            .Must((_, o, c) => o is not null || Fields(c).Unreadable("output"))
            .WithExactMessage((_, _) => "'output' is required: the run's folder, relative to Training:OutputRoot")
            .Must(o => o is null || OutputProblem(o) is null).WithExactMessage((_, o) => OutputProblem(o!)!);
        Integer(x => x.ImageSize, "image_size", 1, TrainingJobs.MaxImageSize);
        Field(x => x.Channels, NotAnInteger("channels", 1, 3))
            .Must(c => c is null or 1 or 3).WithExactMessage((_, c) => $"channels must be 1 or 3, got {c}");
        Field(x => x.InitFrom, v => $"init_from must be \"served\" or absent, not {JsonText.Show(v)}")
            .Must(i => i is null or "served").WithExactMessage((_, i) => $"init_from must be \"served\" (fine-tune the served model) or absent, not \"{i}\"");
        InputPath(x => x.Vae, "vae", required: false);
        Field(x => x.Model, v => $"model must be an object with hidden_size, depth, num_heads, patch_size (integers), conditioning " +
            $"(a string) and learn_sigma (a boolean), not {JsonText.Show(v)}");
        Model();
        Field(x => x.Name, v => $"name must be a string, not {JsonText.Show(v)}")
            .Must(n => n is null || NameProblem(n, "name") is null).WithExactMessage((_, n) => NameProblem(n!, "name")!);
        Field(x => x.ClassNames, v => $"class_names must be an array of strings, not {JsonText.Show(v)}")
            .Must(n => n is null || n.Count is > 0 and <= MaxClassNames)
            .WithExactMessage((_, n) => $"class_names must hold 1..{MaxClassNames} names, got {n!.Count}")
            .Must(n => n is null || n.All(name => name is not null && NameProblem(name, "a class name") is null))
            .WithExactMessage((_, n) => n!.Select((name, i) => name is null ? $"class_names[{i}] is null" : NameProblem(name, $"class_names[{i}]"))
                .First(p => p is not null)!);
        Integer(x => x.Steps, "steps", 1, MaxSteps);
        Integer(x => x.BatchSize, "batch_size", 1, MaxBatchSize);
        Number(x => x.LearningRate, "learning_rate", 0, 1, lowOpen: true);
        Number(x => x.EmaDecay, "ema_decay", 0, 1);
        Field(x => x.EmaWarmup, v => $"ema_warmup must be true or false, not {JsonText.Show(v)}");
        Integer(x => x.Seed, "seed", 0, long.MaxValue);
        Number(x => x.ClassDropoutProb, "class_dropout_prob", 0, 1, highOpen: true);
        Integer(x => x.CheckpointEvery, "checkpoint_every", 0, MaxSteps);
        Integer(x => x.LogEvery, "log_every", 1, MaxSteps);
    }

    /// <summary>Why <paramref name="output"/> cannot name a run folder, or null: empty, <c>.</c> or <c>..</c> segments (the
    /// output root itself would hold the run, and hide every other run from the list), too long, too deep, control
    /// characters.</summary>
    public static string? OutputProblem(string output)
    {
        if (PathProblem(output, "output", MaxOutputBytes) is { } problem) return problem;
        var segments = Segments(output);
        if (segments.Contains(".")) return $"output '{output}' must not contain '.' segments; name a folder below Training:OutputRoot";
        if (segments.Length > MaxOutputDepth)
            return $"output '{output}' is {segments.Length} folders deep; runs are at most {MaxOutputDepth} folders below Training:OutputRoot";
        return null;
    }

    private static string? PathProblem(string path, string name, int maxBytes)
    {
        if (string.IsNullOrWhiteSpace(path)) return $"{name} is empty";
        int bytes = Encoding.UTF8.GetByteCount(path);
        if (bytes > maxBytes) return $"{name} is {bytes} bytes long; at most {maxBytes} (UTF-8)";
        if (path.Any(char.IsControl)) return $"{name} must not contain control characters";
        var segments = Segments(path);
        if (segments.Length == 0) return $"{name} '{path}' names no folder";
        // A dataset may be the data root itself ("."); an output may not (see OutputProblem).
        if (segments.Contains("..")) return $"{name} '{path}' must not contain '..'";
        if (segments.FirstOrDefault(s => Encoding.UTF8.GetByteCount(s) > 255) is { } longName)
            return $"{name} has a folder name of {Encoding.UTF8.GetByteCount(longName)} bytes; at most 255";
        return null;
    }

    private static string[] Segments(string path) => path.Replace('\\', '/').Split('/', StringSplitOptions.RemoveEmptyEntries);

    private static string? NameProblem(string name, string what)
    {
        if (string.IsNullOrWhiteSpace(name)) return $"{what} is empty";
        if (name.Length > MaxNameLength) return $"{what} is {name.Length} characters long; at most {MaxNameLength}";
        if (name.Any(char.IsControl)) return $"{what} must not contain control characters";
        return null;
    }

    private void InputPath(Expression<Func<TrainingJobRequest, string?>> property, string name, bool required)
    {
        var rule = Field(property, v => $"{name} must be a folder name (a string), not {JsonText.Show(v)}");
        if (required)
            rule = rule.Must((_, p, c) => p is not null || Fields(c).Unreadable(name))
                .WithExactMessage((_, _) => $"'{name}' is required: a folder relative to Training:DataRoot");
        rule.Must(p => p is null || PathProblem(p, name, MaxInputPathBytes) is null).WithExactMessage((_, p) => PathProblem(p!, name, MaxInputPathBytes)!);
    }

    /// <summary>A distillation's own fields, and the training fields that do not apply to one.</summary>
    private void Distillation()
    {
        Field(x => x.DistillFrom, v => $"distill_from must be \"served\" or absent, not {JsonText.Show(v)}")
            .Must(d => d is null or "served").WithExactMessage((_, d) => $"distill_from must be \"served\" (distil the served model) or absent, not \"{d}\"");
        string student = string.Join(", ", DistillationSettings.StudentStepChoices);
        Field(x => x.StudentSteps, NotAnInteger("student_steps", 1, 4))
            .Must(n => n is null || DistillationSettings.StudentStepChoices.Contains(n.Value))
            .WithExactMessage((_, n) => $"student_steps must be one of {student}, got {n}");
        Integer(x => x.TeacherSteps, "teacher_steps", 1, DistillationSettings.MaxTeacherSteps);
        RuleFor(x => x.TeacherSteps).Must((x, n) => n is not (>= 1 and <= DistillationSettings.MaxTeacherSteps)
                || !DistillationSettings.StudentStepChoices.Contains(StudentStepsOf(x)) || n.Value % StudentStepsOf(x) == 0)
            .WithExactMessage((x, n) => $"teacher_steps must be a multiple of student_steps ({StudentStepsOf(x)}), got {n}")
            .OverridePropertyName("teacher_steps");
        Integer(x => x.Trajectories, "trajectories", 1, DistillationSettings.MaxTrajectories);
        Field(x => x.GuidanceRange, v => $"guidance_range must be two numbers [lo, hi], not {JsonText.Show(v)}")
            .Must(r => r is null || (r.Length == 2 && r.All(double.IsFinite) && r[0] >= 1 && r[0] <= r[1] && r[1] <= SamplingOptionsMaxCfg))
            .WithExactMessage((_, r) => $"guidance_range must be [lo, hi] with 1 ≤ lo ≤ hi ≤ {SamplingOptionsMaxCfg}, got [{string.Join(", ", r!)}]");
        foreach (var (name, sent) in DistillationOnly)
            RuleFor(x => x).Must(x => x.DistillFrom is not null || !sent(x))
                .WithExactMessage((_, _) => $"{name} applies to a distillation only (distill_from: \"served\")").OverridePropertyName(name);
        foreach (var (name, sent) in TrainingOnly)
            RuleFor(x => x).Must(x => x.DistillFrom is null || !sent(x))
                .WithExactMessage((_, _) => $"{name} does not apply to a distillation: the student learns from the served model, in its space and " +
                    "architecture").OverridePropertyName(name);
    }

    private static int StudentStepsOf(TrainingJobRequest x) => x.StudentSteps ?? new DistillationSettings { Teacher = "" }.StudentSteps;

    private const double SamplingOptionsMaxCfg = DiTServer.Core.Sampling.SamplingOptions.MaxCfgScale;

    // Properties, not fields: Instance above is built during static initialisation, before later fields are set.
    private static (string Name, Func<TrainingJobRequest, bool> Sent)[] DistillationOnly =>
    [
        ("student_steps", x => x.StudentSteps is not null), ("teacher_steps", x => x.TeacherSteps is not null),
        ("trajectories", x => x.Trajectories is not null), ("guidance_range", x => x.GuidanceRange is not null),
    ];

    private static (string Name, Func<TrainingJobRequest, bool> Sent)[] TrainingOnly =>
    [
        ("dataset", x => x.Dataset is not null), ("init_from", x => x.InitFrom is not null), ("vae", x => x.Vae is not null),
        ("model", x => x.Model is not null), ("image_size", x => x.ImageSize is not null), ("channels", x => x.Channels is not null),
        ("class_dropout_prob", x => x.ClassDropoutProb is not null), ("class_names", x => x.ClassNames is not null),
    ];

    /// <summary>The architecture of a new model: sizes in range, and the divisibility the DiT needs, each named by its field.</summary>
    private void Model()
    {
        When(x => x.Model is not null, () =>
        {
            ModelInteger(m => m.HiddenSize, "hidden_size", 4, MaxHiddenSize);
            ModelInteger(m => m.Depth, "depth", 1, MaxDepth);
            ModelInteger(m => m.NumHeads, "num_heads", 1, MaxHiddenSize);
            ModelInteger(m => m.PatchSize, "patch_size", 1, MaxPatchSize);
            RuleFor(x => x.Model!).Must(m => !InRange(m) || (m.HiddenSize % m.NumHeads == 0 && m.HiddenSize % 4 == 0))
                .WithExactMessage((_, m) => $"hidden_size {m.HiddenSize} must be a positive multiple of num_heads {m.NumHeads} and of 4")
                .OverridePropertyName("model.hidden_size");
            RuleFor(x => x.Model!.Conditioning).Must(c => c is null || ConditioningNames.All.Contains(c, StringComparer.OrdinalIgnoreCase))
                .WithExactMessage((_, c) => $"unknown conditioning '{c}'; use one of {string.Join(", ", ConditioningNames.All)}")
                .OverridePropertyName("model.conditioning");
        });
    }

    private static bool InRange(TrainingModelSpec m) =>
        m.HiddenSize is >= 4 and <= MaxHiddenSize && m.NumHeads is >= 1 and <= MaxHiddenSize;

    private void ModelInteger(Expression<Func<TrainingModelSpec, int>> property, string name, int min, int max)
    {
        var read = property.Compile();
        RuleFor(x => read(x.Model!)).Must(n => n >= min && n <= max)
            .WithExactMessage((_, n) => $"model.{name} must be in {min}..{max}, got {n}")
            .OverridePropertyName($"model.{name}");
    }

    private void Integer<TNumber>(Expression<Func<TrainingJobRequest, TNumber?>> property, string name, long min, long max)
        where TNumber : struct, IConvertible =>
        Field(property, NotAnInteger(name, min, max))
            .Must(n => n is null || (Convert.ToInt64(n.Value) >= min && Convert.ToInt64(n.Value) <= max))
            .WithExactMessage((_, n) => $"{name} must be in {min}..{max}, got {n}");

    private void Number(Expression<Func<TrainingJobRequest, double?>> property, string name, double min, double max, bool lowOpen = false,
        bool highOpen = false)
    {
        string range = $"{(lowOpen ? "(" : "[")}{min}, {max}{(highOpen ? ")" : "]")}";
        Field(property, v => $"{name} must be a number in {range}, not {JsonText.Show(v)}")
            .Must(d => d is null || (double.IsFinite(d.Value) && (lowOpen ? d > min : d >= min) && (highOpen ? d < max : d <= max)))
            .WithExactMessage((_, _, c) => $"{name} must be in {range}, got {Fields(c).Raw(name)}");
    }
}
