namespace DiTServer.Core.Diffusion;

/// <summary>β schedules of guided-diffusion's <c>get_named_beta_schedule</c>.</summary>
public static class NoiseSchedule
{
    /// <summary>The linear schedule of Ho et al., scaled to T steps: 1e-4·1000/T … 0.02·1000/T (numpy linspace, float64).</summary>
    public static double[] Linear(int numTimesteps = 1000)
    {
        if (numTimesteps < 1) throw new ArgumentOutOfRangeException(nameof(numTimesteps), "need at least one diffusion step");
        double scale = 1000.0 / numTimesteps, start = scale * 0.0001, end = scale * 0.02;
        var betas = new double[numTimesteps];
        if (numTimesteps == 1) { betas[0] = start; return betas; }
        // numpy.linspace: start + i·step, with the last point set to `end` exactly.
        double step = (end - start) / (numTimesteps - 1);
        for (int i = 0; i < numTimesteps; i++) betas[i] = start + i * step;
        betas[^1] = end;
        return betas;
    }
}
