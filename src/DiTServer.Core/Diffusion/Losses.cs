using static TorchSharp.torch;

namespace DiTServer.Core.Diffusion;

/// <summary>Likelihood helpers of guided-diffusion <c>losses.py</c>.</summary>
public static class Losses
{
    /// <summary>KL divergence between two Gaussians given means and log-variances, elementwise.</summary>
    public static Tensor NormalKl(Tensor mean1, Tensor logvar1, Tensor mean2, Tensor logvar2) =>
        0.5 * (-1.0 + logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2).pow(2) * exp(-logvar2));

    /// <summary>A fast approximation of the standard normal CDF (tanh form).</summary>
    public static Tensor ApproxStandardNormalCdf(Tensor x) =>
        0.5 * (1.0 + tanh(Math.Sqrt(2.0 / Math.PI) * (x + 0.044715 * x.pow(3))));

    /// <summary>Log-likelihood of x ∈ [-1, 1] discretised to 256 bins under N(means, exp(log_scales)²).</summary>
    public static Tensor DiscretizedGaussianLogLikelihood(Tensor x, Tensor means, Tensor logScales)
    {
        var centered = x - means;
        var invStdv = exp(-logScales);
        var cdfPlus = ApproxStandardNormalCdf(invStdv * (centered + 1.0 / 255.0));
        var cdfMin = ApproxStandardNormalCdf(invStdv * (centered - 1.0 / 255.0));
        var logCdfPlus = log(cdfPlus.clamp(min: 1e-12));
        var logOneMinusCdfMin = log((1.0 - cdfMin).clamp(min: 1e-12));
        var cdfDelta = cdfPlus - cdfMin;
        return where(x < -0.999, logCdfPlus, where(x > 0.999, logOneMinusCdfMin, log(cdfDelta.clamp(min: 1e-12))));
    }
}
