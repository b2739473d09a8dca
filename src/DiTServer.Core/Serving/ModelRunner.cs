using DiTServer.Core.Vae;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Diffusion;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Serving;

/// <summary>The only serving code that touches tensors. Called from the worker thread only: dispose scopes and
/// inference mode are thread-local, so each call opens its own and never awaits inside them.</summary>
public sealed class ModelRunner(LoadedModel model, IRunnerFaultInjector? faults = null)
{
    // Respaced tables per step count; built once, shared by every run with that many steps.
    private readonly Dictionary<int, GaussianDiffusion> diffusions = new();

    public LoadedModel Model => model;

    /// <summary>Copies new weights into the served DiT (same architecture; strict). Worker thread only, between steps.</summary>
    public void ReplaceWeights(IReadOnlyDictionary<string, Tensor> weights, string description) =>
        StateDict.LoadStrict(model.Model, weights, description);

    /// <summary>A new run: its generator draws the initial latent now, exactly as the sample verb's run does.</summary>
    public SamplingRun Start(GenerationParameters p)
    {
        ImagePipeline.ValidateFor(model, p.Sampling);
        GaussianDiffusion? diffusion = null; // the ODE solvers share one continuous-time schedule instead
        if (!p.Sampling.IsSolver && !diffusions.TryGetValue(p.Sampling.Steps, out diffusion))
            diffusions[p.Sampling.Steps] = diffusion = LatentSampler.DiffusionFor(model.Config, p.Sampling.Steps);
        using var _ = inference_mode();
        return new SamplingRun(diffusion, model.Config, p.Labels.Select(l => (long)l).ToArray(), p.Sampling, model.Device);
    }

    /// <summary>One denoising step for every run: one forward over all their rows (each at its own timestep and
    /// guidance scale), then each run's own sampler update with its slice of the output.</summary>
    /// <param name="keepPredictedXStart">Runs that keep this step's x̂₀ for a preview (<see cref="SamplingRun.PredictedXStart"/>).</param>
    /// <returns>Runs that failed, with the reason; the others advanced one step.</returns>
    public IReadOnlyList<(SamplingRun Run, Exception Error)> Step(IReadOnlyList<SamplingRun> runs, IReadOnlySet<SamplingRun>? keepPredictedXStart = null)
    {
        var failed = new List<(SamplingRun, Exception)>();
        // Guidance mode decides how outputs are mixed, so each mode gets its own forward (usually there is one).
        foreach (var group in runs.GroupBy(r => r.Options.Guidance))
        {
            var members = group.ToList();
            Tensor[] outputs;
            try
            {
                outputs = ForwardGroup(members, group.Key);
            }
            catch (Exception) when (members.Count > 1)
            {
                // Find the culprit: run each alone, so one bad request cannot fail the others.
                foreach (var run in members) failed.AddRange(Step([run], keepPredictedXStart));
                continue;
            }
            catch (Exception e)
            {
                failed.Add((members[0], e));
                continue;
            }
            for (int i = 0; i < members.Count; i++)
            {
                using var scope = NewDisposeScope();
                using var mode = inference_mode();
                try
                {
                    faults?.OnForward(members[i], outputs[i]);
                    // A non-finite output or update fails this request now (Advance throws NonFiniteSampleException), not after
                    // all its steps, and never its batch mates: rows are independent in a DiT forward.
                    members[i].Advance(outputs[i], keepPredictedXStart?.Contains(members[i]) == true);
                }
                catch (Exception e) { failed.Add((members[i], e)); }
                finally { outputs[i].Dispose(); }
            }
        }
        return failed;
    }

    private Tensor[] ForwardGroup(IReadOnlyList<SamplingRun> runs, GuidanceMode guidance)
    {
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var x = runs.Count == 1 ? runs[0].X : cat(runs.Select(r => r.X).ToArray(), 0);            // (N, C, H, W)
        var t = cat(runs.Select(r => r.ModelTimesteps()).ToArray(), 0);                            // (N)
        var y = cat(runs.Select(r => r.LabelTensor()).ToArray(), 0);                               // (N)
        var scales = runs.SelectMany(r => Enumerable.Repeat(r.CfgScaleThisStep, r.Rows)).ToArray();    // 1 outside a guidance interval
        var output = Denoiser.Forward(model.Model, x, t, y, scales, guidance);                     // (N, C_out, H, W)
        var slices = new Tensor[runs.Count];
        long offset = 0;
        for (int i = 0; i < runs.Count; i++)
        {
            slices[i] = output.narrow(0, offset, runs[i].Rows).MoveToOuterDisposeScope();          // (n_i, C_out, H, W)
            offset += runs[i].Rows;
        }
        return slices;
    }

    /// <summary>Runs the plan's forward: one step for every run of <paramref name="batch"/>, keeping x̂₀ for
    /// <paramref name="previewing"/>. Returns the runs that failed, with the reason.</summary>
    public Dictionary<ScheduledRun, Exception> Execute(IReadOnlyList<ScheduledRun> batch, IReadOnlySet<ScheduledRun> previewing)
    {
        var byRun = batch.ToDictionary(r => r.Sampling!);
        foreach (var run in batch) run.LastStepRows = run.StepRows; // before the step: it moves a run across guidance-interval edges
        var failed = Step(byRun.Keys.ToList(), previewing.Select(r => r.Sampling!).ToHashSet());
        return failed.ToDictionary(f => byRun[f.Run], f => f.Error);
    }

    /// <summary>Torch's intra-op threads for the calling thread's work (the worker's, set once at its start).</summary>
    public static void SetThreads(int? threads)
    {
        if (threads is int n) set_num_threads(n);
    }

    /// <summary>Tensors created on the calling thread and not yet disposed (TorchSharp's per-thread dispose statistics).</summary>
    public static long LiveTensorsOnThisThread => TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    /// <summary>Decodes finished runs in one VAE batch; if that fails, each alone, so that only a run that cannot be
    /// decoded fails. Each entry has the run's images (HWC bytes) or the reason.</summary>
    public IReadOnlyList<(byte[][]? Pixels, Exception? Error)> DecodeEach(IReadOnlyList<SamplingRun> finished)
    {
        try { return Decode(finished).Select(p => ((byte[][]?)p, (Exception?)null)).ToList(); }
        catch (Exception) when (finished.Count > 1)
        {
            return finished.Select(run =>
            {
                try { return ((byte[][]?)Decode([run])[0], (Exception?)null); }
                catch (Exception e) { return (null, e); }
            }).ToList();
        }
        catch (Exception e) { return [(null, e)]; }
    }

    /// <summary>Decodes finished runs in one VAE batch and returns each run's images as HWC bytes.</summary>
    /// <exception cref="InvalidOperationException">The latents hold NaN or infinity (the model is broken for this input).</exception>
    public IReadOnlyList<byte[][]> Decode(IReadOnlyList<SamplingRun> finished)
    {
        using var scope = NewDisposeScope();
        using var mode = inference_mode();
        var latents = finished.Count == 1 ? finished[0].X : cat(finished.Select(r => r.X).ToArray(), 0);
        if (!isfinite(latents).all().item<bool>())
            throw new InvalidOperationException("the sampled latents contain NaN or infinity");
        var pixels = LatentDecoder.DecodeToPixels(model, latents);                                 // (N, C, H, W) uint8, CPU
        var result = new List<byte[][]>(finished.Count);
        int row = 0;
        foreach (var run in finished)
        {
            var images = new byte[run.Rows][];
            for (int i = 0; i < run.Rows; i++, row++)
            {
                using var chw = pixels[row];
                images[i] = Pixels.ToHwcBytes(chw);
            }
            result.Add(images);
        }
        return result;
    }

    /// <summary>Previews of one run's images from the x̂₀ its last step kept: HWC bytes per image, at most
    /// <paramref name="maxSide"/> pixels on a side (see <see cref="PreviewRenderer"/>). Cheap: no VAE decode.</summary>
    /// <exception cref="InvalidOperationException">The last step did not keep x̂₀, or the model cannot make previews.</exception>
    public (byte[][] Hwc, int Side, int Channels) Preview(SamplingRun run, int maxSide)
    {
        if (run.PredictedXStart is not { } x0) throw new InvalidOperationException("the last step did not keep the predicted x0");
        using var scope = NewDisposeScope();
        var pixels = PreviewRenderer.Render(model, x0, maxSide);                                   // (n, C, s, s) uint8, CPU
        var images = new byte[run.Rows][];
        for (int i = 0; i < run.Rows; i++) images[i] = Pixels.ToHwcBytes(pixels[i]);
        return (images, (int)pixels.shape[3], (int)pixels.shape[1]);
    }

    /// <summary>A two-step guided generation of one image; true when it produced finite output.</summary>
    public bool WarmUp()
    {
        var p = new GenerationParameters(0, 1, new SamplingOptions
        {
            Steps = 2,
            CfgScale = model.Config.ClassDropoutProb > 0 ? 4.0 : 1.0,
            Seed = 0,
        });
        using var run = Start(p);
        while (!run.Done)
            if (Step([run]) is [var (_, error), ..]) throw error;
        try { Decode([run]); return true; }
        catch (InvalidOperationException) { return false; }
    }
}
