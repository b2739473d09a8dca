namespace DiTServer.Core.Sampling.Solvers;

/// <summary>How an ODE solver places its steps in time: the authors' <c>skip_type</c>.</summary>
public enum StepSpacing
{
    /// <summary>Uniform in t (the authors' recommendation for high-resolution images).</summary>
    TimeUniform,
    /// <summary>Uniform in the half-logSNR λ (recommended by the authors for low-resolution images).</summary>
    LogSnr,
    /// <summary>Uniform in √t (DDIM's quadratic spacing).</summary>
    TimeQuadratic,
}

/// <summary>The solver's time grid (<c>get_time_steps</c> in dpm_solver_pytorch.py and uni_pc.py).</summary>
public static class SolverTimesteps
{
    /// <param name="tStart">The authors' <c>t_start</c> (their <c>t_T</c>), where an image-to-image run starts; null = T.</param>
    /// <returns>steps + 1 times from <paramref name="tStart"/> (T) down to 1/N, float32.</returns>
    public static float[] Create(DiscreteVpSchedule schedule, StepSpacing spacing, int steps, double? tStart = null)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "at least one step");
        // t_T and t_0 are Python floats (1.0 and 1/N); torch.linspace takes them as they are.
        double tT = tStart ?? 1.0, t0 = 1.0 / schedule.TotalN;
        switch (spacing)
        {
            case StepSpacing.TimeUniform:
                return Linspace.Float32(tT, t0, steps + 1);
            case StepSpacing.TimeQuadratic:
                // linspace(t_T^½, t_0^½, N+1).pow(2): squaring a float32 is one rounded multiply.
                return Linspace.Float32(Math.Pow(tT, 0.5), Math.Pow(t0, 0.5), steps + 1).Select(v => v * v).ToArray();
            case StepSpacing.LogSnr:
                // λ at torch.tensor(t) (float32), then .item() (exact in double), linspace in λ, inverse_lambda.
                double lambdaT = schedule.Lambda((float)tT), lambda0 = schedule.Lambda((float)t0);
                return Linspace.Float32(lambdaT, lambda0, steps + 1).Select(schedule.InverseLambda).ToArray();
            default:
                throw new ArgumentOutOfRangeException(nameof(spacing), spacing, null);
        }
    }

    /// <summary>Where a run that keeps <paramref name="stepsRun"/> of <paramref name="steps"/> steps starts (SDEdit's
    /// strength): the point the full <paramref name="steps"/>-step grid reaches after steps − stepsRun steps. The authors'
    /// <c>get_time_steps(t_T=t_start, N=stepsRun)</c> from there is then, in every spacing, the full grid's last
    /// stepsRun steps up to float32 rounding, as the respaced table's last steps are for DDPM/DDIM.</summary>
    public static double StartTime(DiscreteVpSchedule schedule, StepSpacing spacing, int steps, int stepsRun)
    {
        if (stepsRun < 1 || stepsRun > steps) throw new ArgumentOutOfRangeException(nameof(stepsRun), stepsRun, $"1..{steps} steps");
        return stepsRun == steps ? 1.0 : Create(schedule, spacing, steps)[steps - stepsRun];
    }
}
