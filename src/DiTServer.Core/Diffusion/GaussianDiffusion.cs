using static TorchSharp.torch;

namespace DiTServer.Core.Diffusion;

/// <summary>How the reverse-process variance is chosen (guided-diffusion <c>ModelVarType</c>).</summary>
public enum VarianceType
{
    /// <summary>The model outputs v ∈ [-1, 1] per pixel; log σ² = frac·log β + (1−frac)·log β̃ (Nichol &amp; Dhariwal).</summary>
    LearnedRange,
    /// <summary>σ² = β (with β̃₁ at t = 0), the official default for models without learned sigma.</summary>
    FixedLarge,
    /// <summary>σ² = β̃, the posterior variance.</summary>
    FixedSmall,
}

/// <summary>Output of one reverse-process evaluation p(x_{t−1} | x_t).</summary>
public readonly record struct PosteriorPrediction(Tensor Mean, Tensor LogVariance, Tensor PredXStart, Tensor Eps);

/// <summary>One reverse step's result, as the official <c>p_sample</c> and <c>ddim_sample</c> return it:
/// <c>{"sample": x_{t−1}, "pred_xstart": x̂₀}</c>. x̂₀ is computed by the update anyway, so keeping it is free.</summary>
public readonly record struct SamplerStep(Tensor Sample, Tensor PredXStart);

/// <summary>Per-sample training loss terms (official <c>training_losses</c>): loss = mse (+ vb when sigma is learned).</summary>
public readonly record struct LossTerms(Tensor Loss, Tensor Mse, Tensor? Vb);

/// <summary>Gaussian diffusion with ε-prediction (guided-diffusion <c>GaussianDiffusion</c> + <c>SpacedDiffusion</c>).</summary>
/// <remarks>All tables are float64 like the numpy original; each looked-up value is cast to float32 before use
/// (<c>th.from_numpy(arr)[t].float()</c>). Indices t are *respaced* indices 0..S−1; the model must be called with
/// <see cref="TimestepMap"/>[t], the original timestep.</remarks>
public sealed class GaussianDiffusion
{
    public int NumTimesteps { get; }
    public VarianceType VarianceType { get; }
    public IReadOnlyList<int> TimestepMap { get; }

    public double[] Betas { get; }
    public double[] AlphasCumprod { get; }
    public double[] AlphasCumprodPrev { get; }
    public double[] SqrtAlphasCumprod { get; }
    public double[] SqrtOneMinusAlphasCumprod { get; }
    public double[] SqrtRecipAlphasCumprod { get; }
    public double[] SqrtRecipm1AlphasCumprod { get; }
    public double[] PosteriorVariance { get; }
    public double[] PosteriorLogVarianceClipped { get; }
    public double[] PosteriorMeanCoef1 { get; }
    public double[] PosteriorMeanCoef2 { get; }
    public double[] LogBetas { get; }

    /// <summary>The official <c>create_diffusion</c>: linear schedule over <paramref name="diffusionSteps"/> steps,
    /// respaced to <paramref name="respacing"/> (null or "" = no respacing).</summary>
    public static GaussianDiffusion Create(string? respacing = null, bool learnSigma = true, bool sigmaSmall = false, int diffusionSteps = 1000)
    {
        var betas = NoiseSchedule.Linear(diffusionSteps);
        var use = string.IsNullOrEmpty(respacing)
            ? Enumerable.Range(0, diffusionSteps).ToArray()
            : Respacing.SpaceTimesteps(diffusionSteps, respacing);
        var variance = learnSigma ? VarianceType.LearnedRange : sigmaSmall ? VarianceType.FixedSmall : VarianceType.FixedLarge;
        return Respaced(betas, use, variance);
    }

    /// <summary>Keeps only <paramref name="useTimesteps"/> of the base process: β'_k = 1 − ᾱ[t_k]/ᾱ[t_{k−1}].</summary>
    public static GaussianDiffusion Respaced(double[] baseBetas, IReadOnlyCollection<int> useTimesteps, VarianceType variance)
    {
        var keep = new HashSet<int>(useTimesteps);
        double last = 1.0, acp = 1.0;
        var betas = new List<double>();
        var map = new List<int>();
        for (int i = 0; i < baseBetas.Length; i++)
        {
            acp *= 1.0 - baseBetas[i];
            if (!keep.Contains(i)) continue;
            betas.Add(1 - acp / last);
            last = acp;
            map.Add(i);
        }
        if (map.Count == 0) throw new ArgumentException("respacing keeps no timesteps");
        return new GaussianDiffusion(betas.ToArray(), variance, map);
    }

    public GaussianDiffusion(double[] betas, VarianceType varianceType, IReadOnlyList<int>? timestepMap = null)
    {
        if (betas.Any(b => !(b > 0 && b <= 1))) throw new ArgumentException("betas must be in (0, 1]");
        int n = betas.Length;
        NumTimesteps = n;
        VarianceType = varianceType;
        TimestepMap = timestepMap ?? Enumerable.Range(0, n).ToArray();
        Betas = betas;
        AlphasCumprod = new double[n];
        double acc = 1.0;
        for (int i = 0; i < n; i++) { acc *= 1.0 - betas[i]; AlphasCumprod[i] = acc; }
        AlphasCumprodPrev = Enumerable.Range(0, n).Select(i => i == 0 ? 1.0 : AlphasCumprod[i - 1]).ToArray();
        SqrtAlphasCumprod = AlphasCumprod.Select(a => Math.Sqrt(a)).ToArray();
        SqrtOneMinusAlphasCumprod = AlphasCumprod.Select(a => Math.Sqrt(1.0 - a)).ToArray();
        SqrtRecipAlphasCumprod = AlphasCumprod.Select(a => Math.Sqrt(1.0 / a)).ToArray();
        SqrtRecipm1AlphasCumprod = AlphasCumprod.Select(a => Math.Sqrt(1.0 / a - 1)).ToArray();
        PosteriorVariance = Enumerable.Range(0, n).Select(i => betas[i] * (1.0 - AlphasCumprodPrev[i]) / (1.0 - AlphasCumprod[i])).ToArray();
        // The posterior variance is 0 at t = 0, so the log is clipped by repeating entry 1. With a single step
        // the original leaves this table empty (and crashes); we use log β₀ so a 1-step request still works.
        PosteriorLogVarianceClipped = n > 1
            ? Enumerable.Range(0, n).Select(i => Math.Log(PosteriorVariance[i == 0 ? 1 : i])).ToArray()
            : new[] { Math.Log(betas[0]) };
        PosteriorMeanCoef1 = Enumerable.Range(0, n).Select(i => betas[i] * Math.Sqrt(AlphasCumprodPrev[i]) / (1.0 - AlphasCumprod[i])).ToArray();
        PosteriorMeanCoef2 = Enumerable.Range(0, n).Select(i => (1.0 - AlphasCumprodPrev[i]) * Math.Sqrt(1.0 - betas[i]) / (1.0 - AlphasCumprod[i])).ToArray();
        LogBetas = betas.Select(b => Math.Log(b)).ToArray();
    }

    /// <summary>Original timesteps the model sees for respaced indices t.</summary>
    public Tensor ModelTimesteps(Tensor t)
    {
        var idx = t.cpu().data<long>().ToArray();
        return tensor(idx.Select(i => (long)TimestepMap[(int)i]).ToArray(), device: t.device);
    }

    /// <summary>arr[t] cast to float32, shaped (N, 1, 1, …) to broadcast against a tensor of <paramref name="ndim"/> dims.</summary>
    public static Tensor Extract(double[] arr, Tensor t, long ndim)
    {
        var idx = t.cpu().data<long>().ToArray();
        var values = idx.Select(i => (float)arr[i]).ToArray();
        var shape = new long[ndim];
        Array.Fill(shape, 1L);
        shape[0] = values.Length;
        return tensor(values, device: t.device).view(shape);
    }

    /// <summary>Diffuses x₀ to step t: √ᾱ_t·x₀ + √(1−ᾱ_t)·ε.</summary>
    public Tensor QSample(Tensor xStart, Tensor t, Tensor noise) =>
        Extract(SqrtAlphasCumprod, t, xStart.dim()) * xStart + Extract(SqrtOneMinusAlphasCumprod, t, xStart.dim()) * noise;

    /// <summary>Mean, variance and log-variance-clipped of q(x_{t−1} | x_t, x₀).</summary>
    public (Tensor Mean, Tensor LogVarianceClipped) QPosterior(Tensor xStart, Tensor xT, Tensor t)
    {
        long d = xT.dim();
        var mean = Extract(PosteriorMeanCoef1, t, d) * xStart + Extract(PosteriorMeanCoef2, t, d) * xT;
        return (mean, Extract(PosteriorLogVarianceClipped, t, d));
    }

    public Tensor PredictXStartFromEps(Tensor xT, Tensor t, Tensor eps) =>
        Extract(SqrtRecipAlphasCumprod, t, xT.dim()) * xT - Extract(SqrtRecipm1AlphasCumprod, t, xT.dim()) * eps;

    public Tensor PredictEpsFromXStart(Tensor xT, Tensor t, Tensor predXStart) =>
        (Extract(SqrtRecipAlphasCumprod, t, xT.dim()) * xT - predXStart) / Extract(SqrtRecipm1AlphasCumprod, t, xT.dim());

    /// <summary>p(x_{t−1} | x_t) from the model output (official <c>p_mean_variance</c>, ε-prediction).</summary>
    /// <param name="modelOutput">(N, C or 2C, H, W): ε, then v when the variance is learned.</param>
    public PosteriorPrediction PMeanVariance(Tensor modelOutput, Tensor x, Tensor t, bool clipDenoised = false)
    {
        long c = x.shape[1], d = x.dim();
        Tensor eps, logVariance;
        if (VarianceType == VarianceType.LearnedRange)
        {
            if (modelOutput.shape[1] != 2 * c)
                throw new ArgumentException($"learned sigma needs {2 * c} output channels, got {modelOutput.shape[1]}");
            var parts = modelOutput.split(c, 1);
            eps = parts[0];
            var minLog = Extract(PosteriorLogVarianceClipped, t, d);
            var maxLog = Extract(LogBetas, t, d);
            var frac = (parts[1] + 1) / 2;                        // v ∈ [-1, 1] → [0, 1], not clamped
            logVariance = frac * maxLog + (1 - frac) * minLog;
        }
        else
        {
            eps = modelOutput.shape[1] == c ? modelOutput : modelOutput[.., ..(int)c];
            var table = VarianceType == VarianceType.FixedLarge
                ? Enumerable.Range(0, NumTimesteps).Select(i => Math.Log(i == 0 ? PosteriorVariance[Math.Min(1, NumTimesteps - 1)] : Betas[i])).ToArray()
                : PosteriorLogVarianceClipped;
            logVariance = Extract(table, t, d).expand_as(x);
        }
        var predXStart = PredictXStartFromEps(x, t, eps);
        if (clipDenoised) predXStart = predXStart.clamp(-1, 1);
        var (mean, _) = QPosterior(predXStart, x, t);
        return new PosteriorPrediction(mean, logVariance, predXStart, eps);
    }

    /// <summary>One ancestral DDPM step: x_{t−1} = μ + 1[t≠0]·exp(½ log σ²)·noise.</summary>
    public Tensor DdpmStep(Tensor modelOutput, Tensor x, Tensor t, Tensor noise, bool clipDenoised = false) =>
        PSample(modelOutput, x, t, noise, clipDenoised).Sample;

    /// <summary>The official <c>p_sample</c>: <see cref="DdpmStep"/>'s sample and the x̂₀ its mean was computed from.</summary>
    public SamplerStep PSample(Tensor modelOutput, Tensor x, Tensor t, Tensor noise, bool clipDenoised = false)
    {
        var p = PMeanVariance(modelOutput, x, t, clipDenoised);
        var nonzero = NonzeroMask(t, x.dim());
        return new SamplerStep(p.Mean + nonzero * exp(0.5 * p.LogVariance) * noise, p.PredXStart);
    }

    /// <summary>One DDIM step (Song et al., eq. 12). With eta = 0 it is deterministic and <paramref name="noise"/> may be null.</summary>
    public Tensor DdimStep(Tensor modelOutput, Tensor x, Tensor t, double eta, Tensor? noise, bool clipDenoised = false) =>
        DdimSample(modelOutput, x, t, eta, noise, clipDenoised).Sample;

    /// <summary>The official <c>ddim_sample</c>: <see cref="DdimStep"/>'s sample and the x̂₀ it was computed from.</summary>
    public SamplerStep DdimSample(Tensor modelOutput, Tensor x, Tensor t, double eta, Tensor? noise, bool clipDenoised = false)
    {
        var p = PMeanVariance(modelOutput, x, t, clipDenoised);
        long d = x.dim();
        // ε is re-derived from the (possibly clipped) x₀, as the original does.
        var eps = PredictEpsFromXStart(x, t, p.PredXStart);
        var alphaBar = Extract(AlphasCumprod, t, d);
        var alphaBarPrev = Extract(AlphasCumprodPrev, t, d);
        var meanPred = p.PredXStart * sqrt(alphaBarPrev);
        if (eta == 0)
            return new SamplerStep(meanPred + sqrt(1 - alphaBarPrev) * eps, p.PredXStart);
        if (noise is null) throw new ArgumentNullException(nameof(noise), "DDIM with eta > 0 needs noise");
        var sigma = eta * sqrt((1 - alphaBarPrev) / (1 - alphaBar)) * sqrt(1 - alphaBar / alphaBarPrev);
        // 1 − ᾱ_{t−1} − σ² = (1 − ᾱ_{t−1})·ᾱ_t·(1/ᾱ_{t−1} − 1)/(1 − ᾱ_t) ≥ 0 for eta ≤ 1, but in float32 with eta → 1 and few
        // steps it is a difference of nearly equal numbers that can round below 0, and its sqrt was NaN (issue 19). The
        // clamp changes nothing where the value is ≥ 0, which is everywhere the original gives a number.
        meanPred = meanPred + sqrt((1 - alphaBarPrev - sigma * sigma).clamp_min(0)) * eps;
        return new SamplerStep(meanPred + NonzeroMask(t, d) * sigma * noise, p.PredXStart);
    }

    private static Tensor NonzeroMask(Tensor t, long ndim)
    {
        var shape = new long[ndim];
        Array.Fill(shape, 1L);
        shape[0] = t.shape[0];
        return t.ne(0).to_type(float32).view(shape);
    }

    /// <summary>The official <c>training_losses</c> (loss type MSE): mse on ε plus, for learned sigma, the
    /// variational bound term with ε detached, so vb trains only the variance (Improved DDPM, Section 3.1).</summary>
    /// <param name="model">Called with (x_t, original timesteps) and returns (N, C or 2C, H, W).</param>
    public LossTerms TrainingLosses(Func<Tensor, Tensor, Tensor> model, Tensor xStart, Tensor t, Tensor noise)
    {
        var xT = QSample(xStart, t, noise);
        var modelOutput = model(xT, ModelTimesteps(t));
        long c = xT.shape[1];
        Tensor? vb = null;
        Tensor eps = modelOutput;
        if (VarianceType == VarianceType.LearnedRange)
        {
            var parts = modelOutput.split(c, 1);
            eps = parts[0];
            var frozen = cat(new[] { parts[0].detach(), parts[1] }, 1);
            vb = VbTermsBpd(frozen, xStart, xT, t);
        }
        var mse = MeanFlat((noise - eps).pow(2));
        return new LossTerms(vb is null ? mse : mse + vb, mse, vb);
    }

    /// <summary>KL(q(x_{t−1}|x_t,x₀) ‖ p(x_{t−1}|x_t)) in bits per dim, or the decoder NLL at t = 0.</summary>
    public Tensor VbTermsBpd(Tensor modelOutput, Tensor xStart, Tensor xT, Tensor t)
    {
        var (trueMean, trueLogVar) = QPosterior(xStart, xT, t);
        var p = PMeanVariance(modelOutput, xT, t);
        var kl = MeanFlat(Losses.NormalKl(trueMean, trueLogVar, p.Mean, p.LogVariance)) / Math.Log(2.0);
        var nll = -Losses.DiscretizedGaussianLogLikelihood(xStart, p.Mean, 0.5 * p.LogVariance);
        var decoderNll = MeanFlat(nll) / Math.Log(2.0);
        return where(t.eq(0), decoderNll, kl);
    }

    private static Tensor MeanFlat(Tensor x) => x.mean(Enumerable.Range(1, (int)x.dim() - 1).Select(i => (long)i).ToArray());
}
