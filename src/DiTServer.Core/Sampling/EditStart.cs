using static TorchSharp.torch;

namespace DiTServer.Core.Sampling;

/// <summary>An <see cref="ImageEdit"/> in the model's space, ready for a <see cref="SamplingRun"/>: the image x₀ as the
/// DiT sees it (pixels, or VAE latents) and the redraw mask on the DiT's grid. The run that takes it owns it.</summary>
public sealed class EditStart : IDisposable
{
    /// <param name="x0">(1, C, H, W) the init image in model space, outside any dispose scope.</param>
    /// <param name="redraw">(1, 1, H, W) 1 where the run may change x, 0 where it keeps x₀; null = no mask.</param>
    public EditStart(ImageEdit edit, Tensor x0, Tensor? redraw)
    {
        Edit = edit;
        X0 = x0;
        Redraw = redraw;
    }

    public ImageEdit Edit { get; }
    public double Strength => Edit.Strength;
    /// <summary>(1, C, H, W) x₀ on the model's device.</summary>
    public Tensor X0 { get; }
    /// <summary>(1, 1, H, W) 1 = redraw, 0 = keep, on the model's grid; null = the whole image is redrawn.</summary>
    public Tensor? Redraw { get; }

    public void Dispose()
    {
        X0.Dispose();
        Redraw?.Dispose();
    }
}
