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
    /// <returns>One model timestep per step, in step order (index = steps done before it).</returns>
    public static double[] For(SamplingOptions options)
    {
        if (options.IsSolver)
        {
            var schedule = DiscreteVpSchedule.Linear1000;
            var times = SolverTimesteps.Create(schedule, options.EffectiveSpacing, options.Steps);
            return Enumerable.Range(0, options.Steps).Select(k => (double)schedule.ModelInputTime(times[k])).ToArray();
        }
        // The respaced map is the kept original timesteps in increasing order; step k runs at entry Steps − 1 − k.
        var map = Respacing.SpaceTimesteps(1000, options.Steps.ToString()).Distinct().Order().ToArray();
        return Enumerable.Range(0, options.Steps).Select(k => (double)map[options.Steps - 1 - k]).ToArray();
    }

    /// <summary>Rows a run of <paramref name="images"/> images adds to the forward of each step: one per image, two
    /// when guided at that step by an unconditional copy (<see cref="SamplingOptions.RowsPerImageAt"/>).</summary>
    public static int[] RowsPerStep(SamplingOptions options, int images)
    {
        if (options.GuidanceInterval is null)
            return Enumerable.Repeat(images * options.MaxRowsPerImage, options.Steps).ToArray();
        return For(options).Select(t => images * options.RowsPerImageAt(t)).ToArray();
    }
}
