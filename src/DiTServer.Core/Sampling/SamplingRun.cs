using DiTServer.Core.Diffusion;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling.Solvers;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Sampling;

/// <summary>One request's trajectory through the reverse process: its generator, its latents, its sampler state
/// (for the ODE solvers their history of x̂₀) and how far it has got.</summary>
/// <remarks>The run owns <see cref="X"/> outside any dispose scope; each <see cref="Advance"/> replaces it. Noise is
/// drawn on this run's CPU generator for its n real rows only, so a request gives the same numbers alone or batched.
/// DDPM/DDIM step through the official respaced tables; DPM-Solver++ and UniPC delegate to a <see cref="SolverRun"/>.
/// An image-to-image run (<see cref="EditStart"/>) starts from its image noised to where its strength leaves the
/// schedule, with the first draw as that noise, and runs only the steps from there (SDEdit); with a mask, every new x
/// gets the kept region of the image noised to its time (one draw per step; RePaint's known-region replacement).</remarks>
public sealed class SamplingRun : IDisposable
{
    private readonly GaussianDiffusion? diffusion;
    private readonly SolverRun? solver;
    private readonly Generator generator;
    private readonly long[] shape;
    private readonly Device device;
    private Tensor x;
    private Tensor? predXStart;
    private readonly EditStart? edit;
    private (int Point, Tensor Known)? known;   // inpainting: the kept region noised to the last point asked for

    public SamplingOptions Options { get; }
    public IReadOnlyList<long> Labels { get; }
    /// <summary>DDPM/DDIM: respaced index of the next step, S−1 down to 0; −1 when finished. Solvers: steps left − 1.</summary>
    public int Index => TotalSteps - 1 - StepsDone;
    /// <summary>Model calls done (one per step for every sampler).</summary>
    public int StepsDone { get; private set; }
    /// <summary>Steps this run makes: the options' steps, or an image-to-image run's last ceil(s·S) of them.</summary>
    public int TotalSteps { get; }
    /// <summary>The image this run edits, null when it starts from noise.</summary>
    public ImageEdit? Edit => edit?.Edit;
    public bool Done => StepsDone >= TotalSteps;
    /// <summary>(n, C, H, W) what the model sees at the next step; the sample once <see cref="Done"/>.</summary>
    public Tensor X => solver?.X ?? x;
    /// <summary>(n, C, H, W) the model's prediction of x₀ made by the last <see cref="Advance"/> (for the solvers, their
    /// data prediction, thresholded when asked), when that call was asked to keep it (for a preview); null otherwise.
    /// Owned by the run; the next <see cref="Advance"/> frees it.</summary>
    public Tensor? PredictedXStart => predXStart;
    public int Rows => Labels.Count;
    /// <summary>The blocks' output kept from its last full steps (<see cref="SamplingOptions.CacheInterval"/>); empty
    /// when caching is off. Owned by the run: <see cref="Dispose"/> frees it with the rest of its state.</summary>
    public FeatureCache Cache { get; }

    /// <summary>The timestep the model sees at the next step, in model units (0–999; fractional for the solvers).</summary>
    public double ModelTimestep => solver?.ModelTime ?? diffusion!.TimestepMap[Index];

    /// <summary>The cfg scale of this run's rows in the next forward: 1 outside its guidance interval.</summary>
    public double CfgScaleThisStep => Options.CfgScaleAt(ModelTimestep);

    /// <summary>Rows this run adds to the next forward: one per image, two when guided at this step (the
    /// unconditional copy; never for a guidance-conditioned model). Changes from step to step with a guidance interval;
    /// read it before <see cref="Advance"/>.</summary>
    public int RowsThisStep => Rows * Options.RowsPerImageAt(ModelTimestep);

    /// <summary>For diagnostics and tests: called with (step, x) whenever a step's x becomes final (1-based; UniPC
    /// finishes a step when the next model call corrects it). The tensor belongs to the run: clone it to keep it.</summary>
    public Action<int, Tensor>? OnStepFinished { get; set; }

    /// <summary>A run with a ready-made respaced diffusion for DDPM/DDIM (ignored by the ODE solvers).</summary>
    /// <param name="edit">Image to image: where the run starts and what it keeps; the run takes ownership (also when
    /// this constructor throws). Null = from pure noise.</param>
    public SamplingRun(GaussianDiffusion? diffusion, DiTConfig config, IReadOnlyList<long> labels, SamplingOptions options, Device device,
        EditStart? edit = null)
    {
        try
        {
            if (labels.Count == 0) throw new ArgumentException("at least one label");
            options.Validate();
            // The rows planned for each step follow the options; they must say what the model does with guidance.
            if (options.GuidanceInModel != config.GuidanceConditioned)
                throw new ArgumentException(config.GuidanceConditioned
                    ? "the model is guidance-conditioned but the sampling options plan an unconditional row (set GuidanceInModel)"
                    : "the sampling options say the model takes the guidance scale, but this model is not guidance-conditioned");
        }
        catch
        {
            edit?.Dispose();
            throw;
        }
        Options = options;
        Labels = labels;
        this.edit = edit;
        TotalSteps = ImageEdit.StepsRun(options.Steps, edit?.Strength ?? 1.0);
        shape = new long[] { labels.Count, config.InChannels, config.InputSize, config.InputSize };
        this.device = device;
        generator = new Generator((ulong)options.Seed);
        Cache = new FeatureCache(options.CacheInterval, options.CacheMode);
        using var scope = NewDisposeScope();
        var noise = Draw(); // first draw: the initial latent x_T, or the noise an image-to-image run starts from
        if (options.IsSolver)
        {
            var schedule = DiscreteVpSchedule.Linear1000;
            var times = StepTimesteps.SolverTimes(schedule, options, TotalSteps);
            // x_{t_start} = α·x₀ + σ·ε (q(x_t | x₀) of the VP process at the authors' t_start).
            var start = edit is null ? noise : schedule.Alpha(times[0]) * edit.X0 + schedule.Sigma(times[0]) * noise;
            Func<Tensor, int, Tensor>? constrain = edit?.Redraw is null ? null
                : (xk, k) => KeepKnown(xk, k, k == times.Length - 1 ? null : (schedule.Alpha(times[k]), schedule.Sigma(times[k])));
            solver = new SolverRun(schedule, times, options.EffectiveOrder, options.Sampler == SamplerKind.UniPc, options.EffectiveUniPcVariant,
                options.Thresholding, config.InChannels, start.DetachFromDisposeScope(), constrain);
            x = solver.X;
        }
        else
        {
            this.diffusion = diffusion ?? LatentSampler.DiffusionFor(config, options.Steps);
            if (this.diffusion.NumTimesteps != options.Steps) throw new ArgumentException("the diffusion's step count differs from the options'");
            // The respaced table's last TotalSteps steps: x starts at respaced index TotalSteps − 1, q_sample(x₀) there.
            x = (edit is null ? noise : this.diffusion.QSample(edit.X0.expand(shape), full(Rows, (long)Index, dtype: int64, device: noise.device), noise))
                .DetachFromDisposeScope();
        }
    }

    /// <summary>(n) float32 timesteps the model sees at this step: the original timestep for DDPM/DDIM (an integer,
    /// which the DiT's embedder turns into float32 anyway), the fractional (t − 1/N)·1000 for the solvers.</summary>
    public Tensor ModelTimesteps() => full(Rows, (float)ModelTimestep, dtype: float32, device: X.device);

    /// <summary>(n) labels on the latents' device.</summary>
    public Tensor LabelTensor() => tensor(Labels.ToArray(), device: X.device);

    /// <summary>Takes the model output for this run's rows at the current step and moves x one step toward x₀.</summary>
    /// <exception cref="NonFiniteSampleException">The step gave NaN or infinity (the run is then of no further use).</exception>
    /// <param name="keepPredictedXStart">Keep this step's x̂₀ in <see cref="PredictedXStart"/>. The update computes it
    /// either way, so keeping it costs no compute and changes neither the sample nor the generator's draws.</param>
    public void Advance(Tensor modelOutput, bool keepPredictedXStart = false)
    {
        if (Done) throw new InvalidOperationException("sampling already finished");
        using var scope = NewDisposeScope();
        Tensor x0;
        if (solver is not null)
        {
            x0 = solver.Advance(modelOutput, OnStepFinished);
        }
        else
        {
            var t = full(Rows, (long)Index, dtype: int64, device: x.device);
            var step = Options.Sampler switch
            {
                SamplerKind.Ddpm => diffusion!.PSample(modelOutput, x, t, Draw()),
                SamplerKind.Ddim => diffusion!.DdimSample(modelOutput, x, t, Options.Eta, Options.Eta > 0 ? Draw() : null),
                _ => throw new ArgumentOutOfRangeException(nameof(Options.Sampler)),
            };
            var sample = step.Sample;
            if (edit?.Redraw is not null)
            {
                // The kept region at respaced index Index − 1 (x₀ itself after the last step), q_sample'd with a new draw.
                sample = KeepKnown(sample, StepsDone + 1, Index == 0 ? null : ((float)diffusion!.SqrtAlphasCumprod[Index - 1],
                    (float)diffusion.SqrtOneMinusAlphasCumprod[Index - 1]));
            }
            var old = x;
            x = sample.DetachFromDisposeScope();
            old.Dispose();
            x0 = step.PredXStart;
            OnStepFinished?.Invoke(StepsDone + 1, x);
        }
        predXStart?.Dispose();
        predXStart = keepPredictedXStart ? x0.DetachFromDisposeScope() : null;
        StepsDone++;
        // One check of the new latents catches a non-finite model output too (NaN and ∞ survive every update), so the
        // request fails at the step that went wrong, with its settings named, and never hands NaN to a decoder.
        if (!isfinite(X).all().item<bool>()) throw new NonFiniteSampleException(Options, StepsDone, TotalSteps);
    }

    /// <summary>Inpainting: x with its kept region replaced by the image at point <paramref name="point"/>: x₀ noised
    /// as α·x₀ + σ·ε with a new draw, or x₀ itself at the end (<paramref name="noising"/> null). The noised image is kept
    /// for the point, so a UniPC correction at the same point sees the same one (one draw per step).</summary>
    /// <returns>(n, C, H, W) in the caller's dispose scope.</returns>
    private Tensor KeepKnown(Tensor xNext, int point, (float Alpha, float Sigma)? noising)
    {
        if (known is not { } k || k.Point != point)
        {
            known?.Known.Dispose();
            using var scope = NewDisposeScope();
            var image = edit!.X0.expand(shape);
            var value = noising is var (alpha, sigma) ? alpha * image + sigma * Draw() : image.clone();
            known = (point, value.DetachFromDisposeScope());
        }
        return where(edit!.Redraw! > 0.5f, xNext, known.Value.Known);                                // (n, C, H, W)
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
        if (solver is not null) solver.Dispose(); // owns the latents it was given
        else x.Dispose();
        predXStart?.Dispose();
        known?.Known.Dispose();
        edit?.Dispose();
        Cache.Dispose();
        generator.Dispose();
    }
}
