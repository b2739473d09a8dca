using static TorchSharp.torch;

namespace DiTServer.Core.Sampling.Solvers;

/// <summary>UniPC with data prediction and B(h) variants (Zhao et al. 2023, arXiv 2302.04867, Algorithms 1–3):
/// <c>multistep_uni_pc_bh_update</c> of uni_pc.py split in its two halves, so that the corrector can use the
/// next model call of the run (UniC reuses it; the paper's point is that the corrector costs no extra call).</summary>
public static class UniPc
{
    /// <summary>What the corrector of one step needs once the model has been evaluated at the predicted x.</summary>
    /// <param name="Base">(n, C, H, W) the first-order part σ_t/σ_s·x − α_t·(e^{−h} − 1)·x̂₀_s (<c>x_t_</c>).</param>
    /// <param name="CorrectionHistory">Σ_k ρᶜ_k·D1_k over the older history (<c>corr_res</c>); null when there is none.</param>
    /// <param name="AlphaBh">α_t·B(h).</param>
    /// <param name="RhoLast">ρᶜ of the new evaluation.</param>
    public sealed record Pending(Tensor Base, Tensor? CorrectionHistory, float AlphaBh, float RhoLast) : IDisposable
    {
        public void Dispose()
        {
            Base.Dispose();
            CorrectionHistory?.Dispose();
        }
    }

    /// <summary>UniP, the predictor, from the last history time to <paramref name="t"/> with order
    /// <paramref name="order"/>; with <paramref name="withCorrector"/> also the corrector's coefficients.</summary>
    /// <returns>The predicted x_t and, when asked, the pending correction (tensors detached: the caller owns them).</returns>
    public static (Tensor Predicted, Pending? Correction) Predict(DiscreteVpSchedule ns, UniPcVariant variant, Tensor x,
        IReadOnlyList<Tensor> x0History, IReadOnlyList<float> timeHistory, float t, int order, bool withCorrector)
    {
        if (order < 1 || order > 3) throw new ArgumentOutOfRangeException(nameof(order), order, "order must be 1, 2 or 3");
        if (x0History.Count < order) throw new ArgumentException("history shorter than the order");
        using var scope = NewDisposeScope();
        float tPrev0 = timeHistory[^1];
        var m0 = x0History[^1];
        var (lambdaPrev0, _, sigmaPrev0, sigmaT, alphaT, h) = ns.Step(tPrev0, t);

        // r_k = (λ_{s_k} − λ_s)/h and D1_k = (x̂₀_{s_k} − x̂₀_s)/r_k for the older history, then r = 1 for the new point.
        var rks = new List<float>();
        var d1s = new List<Tensor>();
        for (int i = 1; i < order; i++)
        {
            float rk = (ns.Lambda(timeHistory[^(i + 1)]) - lambdaPrev0) / h;
            rks.Add(rk);
            d1s.Add((x0History[^(i + 1)] - m0) / rk);
        }
        rks.Add(1f);

        // Data prediction integrates in −h. φ-functions by the recurrence h·φ_{k+1} = h·φ_k/h − 1/k!
        // (uni_pc.py; the paper's eq. 8 with B(h)), giving b_i = h_phi_k·i!/B(h) and R_ij = r_j^(i−1).
        float hh = -h;
        float hPhi1 = DiscreteVpSchedule.Expm1(hh);
        float hPhiK = hPhi1 / hh - 1f;
        float bh = variant == UniPcVariant.Bh1 ? hh : DiscreteVpSchedule.Expm1(hh);
        var r = new double[order, order];
        var b = new double[order];
        double factorial = 1;
        for (int i = 1; i <= order; i++)
        {
            for (int j = 0; j < order; j++) r[i - 1, j] = MathF.Pow(rks[j], i - 1);
            b[i - 1] = hPhiK * (float)factorial / bh;
            factorial *= i + 1;
            hPhiK = hPhiK / hh - (float)(1 / factorial);
        }

        var baseX = ((sigmaT / sigmaPrev0) * x - (alphaT * hPhi1) * m0).DetachFromDisposeScope();   // x_t_, owned by Pending
        float alphaBh = alphaT * bh;
        Tensor predicted;
        if (d1s.Count == 0) predicted = baseX.clone();                     // order 1: the DPM-Solver++ first-order step
        else
        {
            // Order 2 uses ρᵖ = ½ (the authors' simplification); higher orders solve the (order−1)-sized system.
            var rhosP = order == 2 ? new[] { 0.5 } : Solve(r, b, order - 1);
            predicted = baseX - alphaBh * WeightedSum(rhosP, d1s);
        }
        predicted = predicted.MoveToOuterDisposeScope();
        if (!withCorrector) { baseX.Dispose(); return (predicted, null); }

        // Order 1 uses ρᶜ = ½; higher orders solve the full system (the new evaluation's r = 1 included).
        var rhosC = order == 1 ? new[] { 0.5 } : Solve(r, b, order);
        var corrHistory = d1s.Count == 0 ? null : WeightedSum(rhosC, d1s).DetachFromDisposeScope();
        return (predicted, new Pending(baseX, corrHistory, alphaBh, (float)rhosC[^1]));
    }

    /// <summary>UniC, the corrector: x_t = x_t_ − α_t·B(h)·(Σ ρᶜ_k·D1_k + ρᶜ_t·(x̂₀_t − x̂₀_s)), with x̂₀_t the model's
    /// data prediction at the predicted x_t (which the run then keeps as its next history entry).</summary>
    public static Tensor Correct(Pending pending, Tensor x0AtPredicted, Tensor x0Prev0)
    {
        using var scope = NewDisposeScope();
        var d1t = x0AtPredicted - x0Prev0;
        var rhoD1t = pending.RhoLast * d1t;
        var inner = pending.CorrectionHistory is null ? rhoD1t : pending.CorrectionHistory + rhoD1t;
        return (pending.Base - pending.AlphaBh * inner).MoveToOuterDisposeScope();
    }

    /// <summary>einsum('k,bkchw->bchw', ρ, D1s) for the first ρ.Length − (extra) coefficients that D1s has.</summary>
    private static Tensor WeightedSum(double[] rhos, IReadOnlyList<Tensor> d1s)
    {
        var sum = (float)rhos[0] * d1s[0];
        for (int k = 1; k < d1s.Count; k++) sum = sum + (float)rhos[k] * d1s[k];
        return sum;
    }

    /// <summary>Solves the leading n×n block of R·ρ = b (torch.linalg.solve on float32 in the original; at most 3×3
    /// here, Gaussian elimination with partial pivoting in double, rounded to float32 like theirs).</summary>
    private static double[] Solve(double[,] r, double[] b, int n)
    {
        var a = new double[n, n + 1];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++) a[i, j] = (float)r[i, j];
            a[i, n] = (float)b[i];
        }
        for (int col = 0; col < n; col++)
        {
            int pivot = col;
            for (int i = col + 1; i < n; i++) if (Math.Abs(a[i, col]) > Math.Abs(a[pivot, col])) pivot = i;
            if (a[pivot, col] == 0) throw new InvalidOperationException("UniPC: singular coefficient system (repeated solver times)");
            if (pivot != col)
                for (int j = col; j <= n; j++) (a[col, j], a[pivot, j]) = (a[pivot, j], a[col, j]);
            for (int i = col + 1; i < n; i++)
            {
                double f = a[i, col] / a[col, col];
                for (int j = col; j <= n; j++) a[i, j] -= f * a[col, j];
            }
        }
        var x = new double[n];
        for (int i = n - 1; i >= 0; i--)
        {
            double s = a[i, n];
            for (int j = i + 1; j < n; j++) s -= a[i, j] * x[j];
            x[i] = s / a[i, i];
        }
        return x.Select(v => (double)(float)v).ToArray();
    }
}
