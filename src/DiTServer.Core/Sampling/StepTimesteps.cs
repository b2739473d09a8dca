using DiTServer.Core.Diffusion;
using DiTServer.Core.Sampling.Solvers;

namespace DiTServer.Core.Sampling;

/// <summary>The model timestep of every step of a run, computed without tensors, so that the scheduler knows how many
/// rows a run adds to each forward (a guidance interval turns the unconditional rows off outside it) before the runner
/// has touched it.</summary>
/// <remarks>The same arithmetic as the run itself: DDPM/DDIM take the official respaced timestep map
/// (<see cref="GaussianDiffusion.TimestepMap"/>, walked from the last entry down), the ODE solvers their float32 times
/// through <see cref="DiscreteVpSchedule.ModelInputTime"/>. A test holds both equal to <see cref="SamplingRun.ModelTimestep"/>.</remarks>
public static class StepTimesteps
{
    /// <param name="strength">An image-to-image run's strength (<see cref="ImageEdit"/>): only its last
    /// ceil(s·S) steps are run; 1 = all of them.</param>
    /// <returns>One model timestep per step run, in step order (index = steps done before it).</returns>
    public static double[] For(SamplingOptions options, double strength = 1.0)
    {
        int run = ImageEdit.StepsRun(options.Steps, strength);
        if (options.IsSolver)
        {
            var schedule = DiscreteVpSchedule.Linear1000;
            var times = SolverTimes(schedule, options, run);
            return Enumerable.Range(0, run).Select(k => (double)schedule.ModelInputTime(times[k])).ToArray();
        }
        // The respaced map is the kept original timesteps in increasing order; step k runs at entry run − 1 − k.
        var map = Respacing.SpaceTimesteps(1000, options.Steps.ToString()).Distinct().Order().ToArray();
        return Enumerable.Range(0, run).Select(k => (double)map[run - 1 - k]).ToArray();
    }

    /// <summary>The solver's time grid of a run that makes <paramref name="stepsRun"/> of its steps: the full grid, or
    /// the grid from the t_start of an image-to-image run (<see cref="SolverTimesteps.StartTime"/>). The run itself
    /// builds its grid here too, so the plan and the run cannot disagree.</summary>
    public static float[] SolverTimes(DiscreteVpSchedule schedule, SamplingOptions options, int stepsRun) =>
        stepsRun == options.Steps
            ? SolverTimesteps.Create(schedule, options.EffectiveSpacing, options.Steps)
            : SolverTimesteps.Create(schedule, options.EffectiveSpacing, stepsRun,
                SolverTimesteps.StartTime(schedule, options.EffectiveSpacing, options.Steps, stepsRun));

    /// <summary>Rows a run of <paramref name="images"/> images adds to the forward of each step it runs: one per image,
    /// two when guided at that step by an unconditional copy (<see cref="SamplingOptions.RowsPerImageAt"/>).</summary>
    public static int[] RowsPerStep(SamplingOptions options, int images, double strength = 1.0)
    {
        if (options.GuidanceInterval is null)
            return Enumerable.Repeat(images * options.MaxRowsPerImage, ImageEdit.StepsRun(options.Steps, strength)).ToArray();
        return For(options, strength).Select(t => images * options.RowsPerImageAt(t)).ToArray();
    }
}
