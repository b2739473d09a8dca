using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;

namespace DiTServer.Core.Training;

/// <summary>What a distillation run distils: the teacher, the student's step count, and the teacher trajectories the
/// student learns from (docs/training.md, "Distilling a few-step student").</summary>
public sealed record DistillationSettings
{
    /// <summary>Step counts a student may be distilled for.</summary>
    public static readonly IReadOnlyList<int> StudentStepChoices = [1, 2, 4];
    /// <summary>The largest trajectory bank a run may ask for (its memory: trajectories × (teacher steps + 1) images).</summary>
    public const int MaxTrajectories = 65536;
    /// <summary>The most teacher steps per trajectory.</summary>
    public const int MaxTeacherSteps = 64;

    /// <summary>The teacher's model folder (absolute).</summary>
    public required string Teacher { get; init; }
    /// <summary>Model calls the student takes per image: each of its DDIM steps lands where the teacher's solve does.</summary>
    public int StudentSteps { get; init; } = 4;
    /// <summary>UniPC steps of each teacher trajectory; a multiple of <see cref="StudentSteps"/>, so that the student's
    /// grid is part of the teacher's (both uniform in time).</summary>
    public int TeacherSteps { get; init; } = 20;
    /// <summary>Teacher trajectories in the bank (each one seed, class and guidance scale).</summary>
    public int Trajectories { get; init; } = 2048;
    /// <summary>Guidance scales of the trajectories are drawn uniformly from [<see cref="MinGuidance"/>, <see cref="MaxGuidance"/>].</summary>
    public double MinGuidance { get; init; } = 1;
    public double MaxGuidance { get; init; } = 6;

    /// <summary>The student's sampler: DPM-Solver++ of order 1, which is DDIM in data prediction (Lu et al. 2022,
    /// Section 3.1), on the time-uniform grid; the steps the loss makes it land.</summary>
    public SamplingOptions StudentSampling(double cfgScale) => new()
    {
        Sampler = SamplerKind.DpmPP2M, Order = 1, Steps = StudentSteps, Spacing = StepSpacing.TimeUniform, CfgScale = cfgScale,
        GuidanceInModel = true,
    };

    /// <summary>Throws with the setting's wire name when the values cannot distil.</summary>
    public void Validate()
    {
        if (!StudentStepChoices.Contains(StudentSteps))
            throw new ArgumentOutOfRangeException("student_steps", StudentSteps, $"student_steps must be one of {string.Join(", ", StudentStepChoices)}");
        if (TeacherSteps < StudentSteps || TeacherSteps > MaxTeacherSteps || TeacherSteps % StudentSteps != 0)
            throw new ArgumentOutOfRangeException("teacher_steps", TeacherSteps,
                $"teacher_steps must be a multiple of student_steps ({StudentSteps}) up to {MaxTeacherSteps}");
        if (Trajectories < 1 || Trajectories > MaxTrajectories)
            throw new ArgumentOutOfRangeException("trajectories", Trajectories, $"trajectories must be in 1..{MaxTrajectories}");
        if (!(MinGuidance >= 1) || !(MaxGuidance <= SamplingOptions.MaxCfgScale) || !(MinGuidance <= MaxGuidance))
            throw new ArgumentOutOfRangeException("guidance_range", $"[{MinGuidance}, {MaxGuidance}]",
                $"the guidance range must be [lo, hi] with 1 ≤ lo ≤ hi ≤ {SamplingOptions.MaxCfgScale}");
    }
}
