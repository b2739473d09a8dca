using static TorchSharp.torch;

namespace DiTServer.Core.Sampling.Solvers;

/// <summary>One request's multistep ODE solve (DPM-Solver++ or UniPC, data prediction), driven one model call at a
/// time so that runs with different solvers, spacings and step counts can share each forward.</summary>
/// <remarks>
/// The authors' <c>sample(..., method="multistep")</c> loops are turned inside out: each <see cref="Advance"/>
/// receives the model's ε at <see cref="X"/> and <see cref="Time"/>, turns it into x̂₀, and moves to the next point
/// the model must see. DPM-Solver++: that point is the next x. UniPC: the new x̂₀ first corrects the step that
/// produced the current point (UniC, no extra call), then the predictor (UniP) gives the next point; the last step
/// is predictor-only. The run owns its history (the last <c>order</c> x̂₀ and their times) outside any dispose scope.
/// </remarks>
public sealed class SolverRun : IDisposable
{
    private readonly DiscreteVpSchedule schedule;
    private readonly float[] times;
    private readonly int order;
    private readonly bool uniPc;
    private readonly UniPcVariant variant;
    private readonly bool thresholding;
    private readonly int epsChannels;
    private readonly List<Tensor> x0History = new();
    private readonly List<float> timeHistory = new();
    private Tensor x;
    private UniPc.Pending? pending;  // UniPC: the corrector of the step that produced x
    private readonly Func<Tensor, int, Tensor>? constrain;

    /// <summary>Model calls made so far; the next one is at <see cref="Times"/>[CallsDone].</summary>
    public int CallsDone { get; private set; }
    /// <summary>Model calls in all: one per step (the final x is not evaluated).</summary>
    public int Steps => times.Length - 1;
    public bool Done => CallsDone >= Steps;
    /// <summary>The x the model sees next (for UniPC before its correction); the sample once <see cref="Done"/>.</summary>
    public Tensor X => x;
    /// <summary>Continuous time of the next model call.</summary>
    public float Time => times[Math.Min(CallsDone, Steps)];
    /// <summary>The DiT's fractional timestep for the next model call: (t − 1/N)·1000.</summary>
    public float ModelTime => schedule.ModelInputTime(Time);
    public IReadOnlyList<float> Times => times;

    /// <param name="times">The time grid, steps + 1 points from where the run starts down to 1/N
    /// (<see cref="SolverTimesteps.Create"/>; an image-to-image run's starts at its t_start).</param>
    /// <param name="xT">(n, C, H, W) x at times[0]: noise, or a noised image; the run takes ownership.</param>
    /// <param name="epsChannels">C: a learned-sigma model's extra channels are not ε and are ignored.</param>
    /// <param name="constrain">Inpainting: (x, k) → x with its kept region replaced, for x at times[k]; called whenever
    /// x takes a new value (a UniPC correction, a step), before anything uses it. Its result belongs to the caller's
    /// dispose scope. Null = unconstrained.</param>
    public SolverRun(DiscreteVpSchedule schedule, float[] times, int order, bool uniPc, UniPcVariant variant,
        bool thresholding, int epsChannels, Tensor xT, Func<Tensor, int, Tensor>? constrain = null)
    {
        int steps = times.Length - 1;
        if (order < 1 || order > 3) throw new ArgumentOutOfRangeException(nameof(order), order, "order must be 1, 2 or 3");
        if (steps < order) throw new ArgumentOutOfRangeException(nameof(times), steps, $"steps must be at least the order ({order})");
        this.schedule = schedule;
        this.times = times;
        this.constrain = constrain;
        this.order = order;
        this.uniPc = uniPc;
        this.variant = variant;
        this.thresholding = thresholding;
        this.epsChannels = epsChannels;
        x = xT;
    }

    /// <summary>Takes the model output at (<see cref="X"/>, <see cref="Time"/>) and moves to the next evaluation point.</summary>
    /// <param name="onStepFinished">Called with (step, x) for each step whose x became final in this call (1-based;
    /// UniPC finishes step k when call k+1 corrects it). The tensor belongs to the run: clone to keep it.</param>
    /// <returns>(n, C, H, W) the data prediction x̂₀ of this call, owned by the caller.</returns>
    public Tensor Advance(Tensor modelOutput, Action<int, Tensor>? onStepFinished = null)
    {
        if (Done) throw new InvalidOperationException("sampling already finished");
        using var scope = NewDisposeScope();
        float t = times[CallsDone];
        // data_prediction_fn: x̂₀ = (x − σ_t·ε)/α_t, then the optional x̂₀ correction.
        var eps = modelOutput.shape[1] == epsChannels ? modelOutput : modelOutput[.., ..epsChannels];
        var x0 = (x - schedule.Sigma(t) * eps) / schedule.Alpha(t);
        if (thresholding) x0 = DynamicThresholding.Apply(x0);

        if (pending is not null)
        {
            // UniC: correct the step that produced x with the x̂₀ just computed there; x̂₀ itself stays as it is.
            var corrected = UniPc.Correct(pending, x0, x0History[^1]);
            if (constrain is not null) corrected = constrain(corrected, CallsDone);
            corrected = corrected.DetachFromDisposeScope();
            pending.Dispose();
            pending = null;
            Replace(ref x, corrected);
            onStepFinished?.Invoke(CallsDone, x);
        }
        Push(x0.clone().DetachFromDisposeScope(), t);
        CallsDone++;

        int step = CallsDone;                 // the step about to be taken: from times[step − 1] to times[step]
        float next = times[step];
        Tensor stepped;
        if (!uniPc)
        {
            stepped = DpmSolverPlusPlus.Update(schedule, x, x0History, timeHistory, next, DpmSolverPlusPlus.StepOrder(step, Steps, order));
        }
        else
        {
            // UniPC always lowers the order at the end (lower_order_final), and skips the corrector after the last step.
            int stepOrder = step < order ? step : Math.Min(order, Steps + 1 - step);
            var (predicted, correction) = UniPc.Predict(schedule, variant, x, x0History, timeHistory, next, stepOrder, withCorrector: step < Steps);
            stepped = predicted;
            pending = correction;
        }
        if (constrain is not null) stepped = constrain(stepped, step);
        Replace(ref x, stepped.DetachFromDisposeScope());
        if (!uniPc || Done) onStepFinished?.Invoke(step, x);
        return x0.MoveToOuterDisposeScope();
    }

    /// <summary>Keeps the last <c>order</c> x̂₀ (the authors' <c>model_prev_list</c> shifts the same way).</summary>
    private void Push(Tensor x0, float t)
    {
        x0History.Add(x0);
        timeHistory.Add(t);
        if (x0History.Count > order)
        {
            x0History[0].Dispose();
            x0History.RemoveAt(0);
            timeHistory.RemoveAt(0);
        }
    }

    private static void Replace(ref Tensor field, Tensor value)
    {
        var old = field;
        field = value;
        if (!ReferenceEquals(old, value)) old.Dispose();
    }

    public void Dispose()
    {
        x.Dispose();
        pending?.Dispose();
        foreach (var h in x0History) h.Dispose();
        x0History.Clear();
    }
}
