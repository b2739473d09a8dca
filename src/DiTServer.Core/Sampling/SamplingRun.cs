using DiTServer.Core.Diffusion;
using DiTServer.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Sampling;

/// <summary>One request's trajectory through the reverse process: its generator, its latents and how far it has got.</summary>
/// <remarks>The run owns <see cref="X"/> outside any dispose scope; each <see cref="Advance"/> replaces it. Noise is
/// drawn on this run's CPU generator for its n real rows only, so a request gives the same numbers alone or batched.</remarks>
public sealed class SamplingRun : IDisposable
{
    private readonly GaussianDiffusion diffusion;
    private readonly Generator generator;
    private readonly long[] shape;
    private readonly Device device;
    private Tensor x;
    private Tensor? predXStart;

    public SamplingOptions Options { get; }
    public IReadOnlyList<long> Labels { get; }
    /// <summary>Respaced index of the next step: S−1 down to 0; −1 when finished.</summary>
    public int Index { get; private set; }
    public int StepsDone => diffusion.NumTimesteps - 1 - Index;
    public int TotalSteps => diffusion.NumTimesteps;
    public bool Done => Index < 0;
    public Tensor X => x;
    /// <summary>(n, C, H, W) the model's prediction of x₀ made by the last <see cref="Advance"/>, when that call was
    /// asked to keep it (for a preview); null otherwise. Owned by the run; the next <see cref="Advance"/> frees it.</summary>
    public Tensor? PredictedXStart => predXStart;
    public int Rows => Labels.Count;

    public SamplingRun(GaussianDiffusion diffusion, DiTConfig config, IReadOnlyList<long> labels, SamplingOptions options, Device device)
    {
        if (labels.Count == 0) throw new ArgumentException("at least one label");
        this.diffusion = diffusion;
        Options = options;
        Labels = labels;
        Index = diffusion.NumTimesteps - 1;
        shape = new long[] { labels.Count, config.InChannels, config.InputSize, config.InputSize };
        this.device = device;
        generator = new Generator((ulong)options.Seed);
        x = Draw().DetachFromDisposeScope(); // first draw: the initial latent x_T
    }

    /// <summary>(n) original timesteps the model sees at this step.</summary>
    public Tensor ModelTimesteps() => full(Rows, (long)diffusion.TimestepMap[Index], dtype: int64, device: x.device);

    /// <summary>(n) labels on the latents' device.</summary>
    public Tensor LabelTensor() => tensor(Labels.ToArray(), device: x.device);

    /// <summary>Takes the model output for this run's rows at the current step and moves x one step toward x₀.</summary>
    /// <param name="keepPredictedXStart">Keep this step's x̂₀ in <see cref="PredictedXStart"/>. The update computes it
    /// either way, so keeping it costs no compute and changes neither the sample nor the generator's draws.</param>
    public void Advance(Tensor modelOutput, bool keepPredictedXStart = false)
    {
        if (Done) throw new InvalidOperationException("sampling already finished");
        using var scope = NewDisposeScope();
        var t = full(Rows, (long)Index, dtype: int64, device: x.device);
        var step = Options.Sampler switch
        {
            SamplerKind.Ddpm => diffusion.PSample(modelOutput, x, t, Draw()),
            SamplerKind.Ddim => diffusion.DdimSample(modelOutput, x, t, Options.Eta, Options.Eta > 0 ? Draw() : null),
            _ => throw new ArgumentOutOfRangeException(nameof(Options.Sampler)),
        };
        var old = x;
        x = step.Sample.DetachFromDisposeScope();
        old.Dispose();
        predXStart?.Dispose();
        predXStart = keepPredictedXStart ? step.PredXStart.DetachFromDisposeScope() : null;
        Index--;
    }

    /// <summary>randn(n, C, H, W) on the CPU generator (the same numbers on every device), then moved.</summary>
    private Tensor Draw()
    {
        var cpu = randn(shape, generator: generator);
        if (device.type == DeviceType.CPU) return cpu;
        using (cpu) return cpu.to(device);
    }

    public void Dispose()
    {
        x.Dispose();
        predXStart?.Dispose();
        generator.Dispose();
    }
}
