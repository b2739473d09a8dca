using static TorchSharp.torch;

namespace DiTServer.Core.Sampling.Solvers;

/// <summary>Multistep DPM-Solver++ with data prediction (Lu et al. 2022, arXiv 2211.01095, Algorithm 2 and
/// Appendix B): the updates <c>dpm_solver_first_update</c>, <c>multistep_dpm_solver_second_update</c> and
/// <c>multistep_dpm_solver_third_update</c> of dpm_solver_pytorch.py, <c>algorithm_type="dpmsolver++"</c>,
/// <c>solver_type="dpmsolver"</c>.</summary>
/// <remarks>Scalars are float32 and each tensor expression keeps the authors' order of operations, so results
/// agree with theirs to rounding.</remarks>
public static class DpmSolverPlusPlus
{
    /// <summary>One step from the last history time to <paramref name="t"/>.</summary>
    /// <param name="x">(n, C, H, W) x at the last history time.</param>
    /// <param name="x0History">Data predictions x̂₀, oldest first; the last <paramref name="order"/> are used.</param>
    /// <param name="timeHistory">Their times, oldest first.</param>
    public static Tensor Update(DiscreteVpSchedule ns, Tensor x, IReadOnlyList<Tensor> x0History, IReadOnlyList<float> timeHistory, float t, int order)
    {
        if (order < 1 || order > 3) throw new ArgumentOutOfRangeException(nameof(order), order, "order must be 1, 2 or 3");
        if (x0History.Count < order || timeHistory.Count < order) throw new ArgumentException("history shorter than the order");
        var m0 = x0History[^1];
        float tPrev0 = timeHistory[^1];
        var (lambdaPrev0, _, sigmaPrev0, sigmaT, alphaT, h) = ns.Step(tPrev0, t);
        float phi1 = DiscreteVpSchedule.Expm1(-h);
        // First order (DDIM in λ, eq. 5 of the paper): x_t = σ_t/σ_s·x − α_t·(e^{−h} − 1)·x̂₀_s.
        var xt = (sigmaT / sigmaPrev0) * x - (alphaT * phi1) * m0;
        if (order == 1) return xt;

        var m1 = x0History[^2];
        float lambdaPrev1 = ns.Lambda(timeHistory[^2]);
        float h0 = lambdaPrev0 - lambdaPrev1;
        float r0 = h0 / h;
        using var d10 = (1f / r0) * (m0 - m1);                                     // D1_0
        if (order == 2)
        {
            // Second order: − ½·α_t·(e^{−h} − 1)·D1_0.
            using (xt)
                return xt - (0.5f * (alphaT * phi1)) * d10;
        }

        var m2 = x0History[^3];
        float lambdaPrev2 = ns.Lambda(timeHistory[^3]);
        float h1 = lambdaPrev1 - lambdaPrev2;
        float r1 = h1 / h;
        using var d11 = (1f / r1) * (m1 - m2);                                     // D1_1
        using var diff = d10 - d11;
        using var d1 = d10 + (r0 / (r0 + r1)) * diff;
        using var d2 = (1f / (r0 + r1)) * diff;
        float phi2 = phi1 / h + 1f;
        float phi3 = phi2 / h - 0.5f;
        using (xt)
        using (var withD1 = xt + (alphaT * phi2) * d1)
            return withD1 - (alphaT * phi3) * d2;
    }

    /// <summary>The order of multistep step <paramref name="step"/> (1-based, of <paramref name="steps"/>):
    /// lower orders while the history fills, and with <c>lower_order_final</c> lower ones again at the end,
    /// which the authors apply only when steps &lt; 10.</summary>
    public static int StepOrder(int step, int steps, int order) =>
        step < order ? step : steps < 10 ? Math.Min(order, steps + 1 - step) : order;
}
