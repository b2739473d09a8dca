using DiTServer.Core.Diffusion;

namespace DiTServer.Core.Sampling.Solvers;

/// <summary>A discrete-time DPM seen as a continuous VP process on t ∈ [1/N, 1]: the authors'
/// <c>NoiseScheduleVP("discrete", betas=...)</c> (dpm_solver_pytorch.py; uni_pc.py has the same class).</summary>
/// <remarks>log α is tabulated in float32 at t_i = (i+1)/N and interpolated piecewise-linearly; every derived
/// quantity is computed in float32 as their tensors are. σ_t = √(1 − e^{2 log α}) cancels badly near t = 1/N, so
/// computing it in another precision would move the last step by more than rounding: we keep theirs.
/// Immutable, so one instance serves every run.</remarks>
public sealed class DiscreteVpSchedule
{
    private readonly float[] t;
    private readonly float[] logAlpha;
    private readonly float[] logAlphaAscending; // for inverse_lambda: log α increases as t decreases
    private readonly float[] tDescending;

    /// <summary>The official linear 1000-step β schedule (what DiT was trained with).</summary>
    public static DiscreteVpSchedule Linear1000 { get; } = new(NoiseSchedule.Linear(1000));

    /// <summary>N: the number of tabulated steps (after the authors' λ clipping).</summary>
    public int TotalN => t.Length;
    /// <summary>T, where sampling starts.</summary>
    public float TimeMax => 1f;
    /// <summary>1/N, where sampling ends (the authors' default <c>t_end</c>).</summary>
    public float TimeMin => (float)(1.0 / TotalN);

    public DiscreteVpSchedule(double[] betas)
    {
        // log α_n = ½·Σ log(1 − β) in float64, as torch on the float64 betas (cumsum adds in order).
        var la = new double[betas.Length];
        double sum = 0;
        for (int i = 0; i < betas.Length; i++) { sum += Math.Log(1 - betas[i]); la[i] = 0.5 * sum; }
        int n = ClippedLength(la);
        logAlpha = la.Take(n).Select(v => (float)v).ToArray();
        // torch.linspace(0, 1, N + 1)[1:] in float32, with torch's own formula (see Linspace).
        t = Linspace.Float32(0, 1, n + 1)[1..];
        logAlphaAscending = logAlpha.Reverse().ToArray();
        tDescending = t.Reverse().ToArray();
    }

    /// <summary><c>numerical_clip_alpha</c>: drop the steps whose half-logSNR λ is below −5.1 (cosine-like
    /// schedules); the linear schedule ends at λ ≈ −5.07, so it keeps all 1000.</summary>
    private static int ClippedLength(double[] logAlphas, double clippedLambda = -5.1)
    {
        int below = 0;
        foreach (var la in logAlphas)
        {
            double lambda = la - 0.5 * Math.Log(1 - Math.Exp(2 * la));
            if (lambda < clippedLambda) below++;
        }
        return logAlphas.Length - below;
    }

    /// <summary>log α_t (<c>marginal_log_mean_coeff</c>).</summary>
    public float LogAlpha(float time) => PiecewiseLinear.Evaluate(time, t, logAlpha);

    /// <summary>α_t (<c>marginal_alpha</c>).</summary>
    public float Alpha(float time) => MathF.Exp(LogAlpha(time));

    /// <summary>σ_t = √(1 − α_t²) (<c>marginal_std</c>).</summary>
    public float Sigma(float time) => MathF.Sqrt(1f - MathF.Exp(2f * LogAlpha(time)));

    /// <summary>λ_t = log α_t − log σ_t, the half-logSNR (<c>marginal_lambda</c>).</summary>
    public float Lambda(float time)
    {
        float la = LogAlpha(time);
        float logStd = 0.5f * MathF.Log(1f - MathF.Exp(2f * la));
        return la - logStd;
    }

    /// <summary>The quantities every multistep solver's update from <paramref name="s"/> to <paramref name="t"/> starts
    /// from (dpm_solver.py and uni_pc.py compute the same ones first), computed in one place.</summary>
    public VpStep Step(float s, float t)
    {
        float lambdaS = Lambda(s), lambdaT = Lambda(t);
        return new VpStep(lambdaS, lambdaT, Sigma(s), Sigma(t), MathF.Exp(LogAlpha(t)), lambdaT - lambdaS);
    }

    /// <summary>t such that λ_t = <paramref name="lambda"/> (<c>inverse_lambda</c>, discrete branch):
    /// log α = −½·logaddexp(0, −2λ), then the table read backwards.</summary>
    public float InverseLambda(float lambda)
    {
        float logAlphaValue = -0.5f * LogAddExpZero(-2f * lambda);
        return PiecewiseLinear.Evaluate(logAlphaValue, logAlphaAscending, tDescending);
    }

    /// <summary>The DiT's input for continuous time t: <c>(t − 1/N)·1000</c> (<c>get_model_input_time</c>), a
    /// fractional timestep in [0, 999]; float32 arithmetic as torch does it on the float32 time.</summary>
    public float ModelInputTime(float time) => (time - TimeMin) * 1000f;

    /// <summary>logaddexp(0, v) as torch computes it in float32: max + log1p(exp(−|Δ|)).</summary>
    private static float LogAddExpZero(float v)
    {
        float m = MathF.Max(0f, v);
        float e = MathF.Exp(-MathF.Abs(v));
        return m + (float)Log1p(e);
    }

    /// <summary>log(1 + x) without losing small x (Goldberg's trick; .NET has no log1p).</summary>
    internal static double Log1p(double x)
    {
        double u = 1 + x;
        return u == 1 ? x : Math.Log(u) * x / (u - 1);
    }

    /// <summary>e^x − 1 without losing small x (Kahan's trick; .NET has no expm1), rounded to float32.</summary>
    internal static float Expm1(float x)
    {
        double xd = x;
        double u = Math.Exp(xd);
        if (u == 1) return x;
        double um1 = u - 1;
        if (um1 == -1) return -1f;
        return (float)(um1 * xd / Math.Log(u));
    }
}

/// <summary>λ, σ at both ends of a solver step s → t, α_t, and the step in half-logSNR h = λ_t − λ_s.</summary>
public readonly record struct VpStep(float LambdaS, float LambdaT, float SigmaS, float SigmaT, float AlphaT, float H);
