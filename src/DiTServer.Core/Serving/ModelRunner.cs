using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Diffusion;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Serving;

/// <summary>The only serving code that touches tensors (vLLM's model runner): it owns every admitted request's tensor
/// state and executes the scheduler's plans. Called from the worker thread only: dispose scopes and inference mode are
/// thread-local, so each call opens its own and never awaits inside them.</summary>
public sealed class ModelRunner(LoadedModel model, IRunnerFaultInjector? faults = null)
{
    // Respaced tables per step count; built once, shared by every run with that many steps.
    private readonly Dictionary<int, GaussianDiffusion> diffusions = new();
    // Per-request tensor state (latents, generator, solver history), owned here from admission to the end of the run.
    private readonly Dictionary<ScheduledRun, SamplingRun> states = new();

    public LoadedModel Model => model;

    /// <summary>Copies new weights into the served DiT (same architecture; strict). Worker thread only, between steps.</summary>
    public void ReplaceWeights(IReadOnlyDictionary<string, Tensor> weights, string description) =>
        StateDict.LoadStrict(model.Model, weights, description);

    /// <summary>A new run: its generator draws the initial latent now, exactly as the sample verb's run does. An edit's
    /// image is encoded here (the VAE for latent models), so it joins the batch at its own first timestep.</summary>
    public SamplingRun Start(GenerationParameters p)
    {
        ImagePipeline.ValidateFor(model, p.Sampling);
        GaussianDiffusion? diffusion = null; // the ODE solvers share one continuous-time schedule instead
        if (!p.Sampling.IsSolver && !diffusions.TryGetValue(p.Sampling.Steps, out diffusion))
            diffusions[p.Sampling.Steps] = diffusion = LatentSampler.DiffusionFor(model.Config, p.Sampling.Steps);
        using var _ = inference_mode();
        var start = p.Edit is null ? null : EditEncoder.Encode(model, p.Edit);
        return new SamplingRun(diffusion, model.Config, p.Labels.Select(l => (long)l).ToArray(), p.Sampling, model.Device, start);
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
        // Runs on a cached step skip the blocks and share only the final layer with the others (BatchForward).
        var (output, steps) = BatchForward.Run(model.Model, runs, guidance);                    // (N, C_out, H, W)
        fullSteps += steps.Full;
        cachedSteps += steps.Cached;
        var slices = new Tensor[runs.Count];
        long offset = 0;
        for (int i = 0; i < runs.Count; i++)
        {
            slices[i] = output.narrow(0, offset, runs[i].Rows).MoveToOuterDisposeScope();          // (n_i, C_out, H, W)
            offset += runs[i].Rows;
        }
        return slices;
    }

    private long fullSteps, cachedSteps;

    /// <summary>Run-steps whose rows went through the DiT's blocks, since this runner was made.</summary>
    public long FullSteps => fullSteps;
    /// <summary>Run-steps that used their feature cache instead of the blocks (<see cref="SamplingOptions.CacheInterval"/>).</summary>
    public long CachedSteps => cachedSteps;

    /// <summary>Executes one plan (worker thread): frees the state of runs that ended, starts the admitted ones, runs
    /// one step for the batch, renders the previews it asks for, and decodes the runs that reached their last step.</summary>
    public RunnerOutput Execute(SchedulerOutput plan)
    {
        var failed = new Dictionary<ScheduledRun, RunFailure>();
        long fullBefore = fullSteps, cachedBefore = cachedSteps;
        foreach (var ended in plan.Ended)
            if (ended.Run is { } run) Free(run);
        foreach (var run in plan.Admitted)
        {
            try { states[run] = Start(run.Request.Parameters); }
            catch (Exception e) { failed[run] = new RunFailure("generation failed", e); }
        }
        var batch = plan.Batch.Where(r => !failed.ContainsKey(r)).ToList();
        foreach (var run in batch)
        {
            // The scheduler planned the forward's rows without tensors; they must be the rows this run will add.
            if (!states.TryGetValue(run, out var sampling))
                failed[run] = new RunFailure("generation failed", new InvalidOperationException($"the runner has no state for {run}"));
            else if (sampling.RowsThisStep != run.LastStepRows)
                failed[run] = new RunFailure("generation failed", new InvalidOperationException(
                    $"the scheduler planned {run.LastStepRows} rows for {run} at step {sampling.StepsDone + 1}, the run has {sampling.RowsThisStep}"));
        }
        batch.RemoveAll(failed.ContainsKey);
        var byState = batch.ToDictionary(r => states[r]);
        foreach (var (sampling, error) in Step(byState.Keys.ToList(), plan.Previewing.Where(byState.ContainsValue).Select(r => states[r]).ToHashSet()))
            failed[byState[sampling]] = new RunFailure("generation failed", error);
        var previews = new List<RenderedPreview>();
        foreach (var run in batch.Where(r => plan.Previewing.Contains(r) && !failed.ContainsKey(r)))
        {
            var maxSide = run.Request.Preview!.MaxSide;
            try
            {
                var (hwc, side, channels) = Preview(states[run], maxSide);
                previews.Add(new RenderedPreview(run, hwc, side, channels, null));
            }
            catch (Exception e) { previews.Add(new RenderedPreview(run, null, 0, 0, e)); }
        }
        var done = batch.Where(r => !failed.ContainsKey(r) && states[r].Done).ToList();
        var finished = new List<(ScheduledRun, byte[][])>();
        if (done.Count > 0)
        {
            // Decoded together; a run that cannot be decoded fails alone.
            var decoded = DecodeEach(done.Select(r => states[r]).ToList());
            for (int i = 0; i < done.Count; i++)
            {
                if (decoded[i].Pixels is { } images) finished.Add((done[i], images));
                else failed[done[i]] = new RunFailure("decoding failed", decoded[i].Error!);
                Free(done[i]);
            }
        }
        foreach (var run in failed.Keys) Free(run);
        return new RunnerOutput(failed, previews, finished, (int)(fullSteps - fullBefore), (int)(cachedSteps - cachedBefore));
    }

    /// <summary>Runs with state on this runner (tests check that ended runs leave nothing behind).</summary>
    public int ActiveRuns => states.Count;

    /// <summary>Bytes the runs' feature caches hold now (<see cref="FeatureCache"/>; tests check that ended runs free theirs).</summary>
    public long FeatureCacheBytes => states.Values.Sum(s => s.Cache.Bytes);

    /// <summary>Frees a run's tensors, its feature cache included (worker thread only); nothing when it has none.</summary>
    public void Free(ScheduledRun run)
    {
        if (states.Remove(run, out var sampling)) sampling.Dispose();
    }

    /// <summary>Frees every run's tensors (the loop is ending).</summary>
    public void FreeAll()
    {
        foreach (var sampling in states.Values) sampling.Dispose();
        states.Clear();
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
                var hwc = Pixels.ToHwcBytes(chw);
                images[i] = run.Edit?.Composite(hwc) ?? hwc; // an inpainting run's kept pixels come back exactly
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
        var p = new GenerationParameters(0, 1, ImagePipeline.ForModel(model, new SamplingOptions
        {
            Steps = 2,
            CfgScale = model.Config.ClassDropoutProb > 0 ? 4.0 : 1.0,
            Seed = 0,
        }));
        using var run = Start(p);
        while (!run.Done)
            if (Step([run]) is [var (_, error), ..]) throw error;
        try { Decode([run]); return true; }
        catch (InvalidOperationException) { return false; }
    }
}
