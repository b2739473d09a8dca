using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Sampling;

/// <summary>One guided DiT forward over the rows of several runs, each at its own timestep and guidance scale, with
/// feature caching decided per run: rows of runs on a full step go through the blocks, rows of runs on a cached step
/// only through the embedders and the final layer (<see cref="FeatureCache"/>), and both share the final layer's batch.
/// The server's runner and the sample verb both step through here, so a run gives the same pixels either way.</summary>
public static class BatchForward
{
    /// <summary>Which runs ran the blocks and which used their cache in one forward.</summary>
    public readonly record struct Steps(int Full, int Cached);

    /// <returns>(Σ rows, C_out, H, W) the runs' outputs in order (each run's <see cref="SamplingRun.Rows"/>), in the
    /// caller's dispose scope, and the count of full and cached runs. The caches of full runs are updated only when
    /// the whole forward succeeded, so a forward that throws can be retried.</returns>
    public static (Tensor Output, Steps Steps) Run(DiT model, IReadOnlyList<SamplingRun> runs, GuidanceMode guidance)
    {
        var x = runs.Count == 1 ? runs[0].X : cat(runs.Select(r => r.X).ToArray(), 0);            // (N, C, H, W)
        var t = cat(runs.Select(r => r.ModelTimesteps()).ToArray(), 0);                            // (N)
        var y = cat(runs.Select(r => r.LabelTensor()).ToArray(), 0);                               // (N)
        var scales = runs.SelectMany(r => Enumerable.Repeat(r.CfgScaleThisStep, r.Rows)).ToArray();    // 1 outside a guidance interval
        var full = runs.Select(r => r.Cache.IsFullStep(r.StepsDone, r.RowsThisStep)).ToArray();
        var steps = new Steps(full.Count(f => f), full.Count(f => !f));
        if (!runs.Any(r => r.Options.IsCached))
            return (Denoiser.Forward(model, x, t, y, scales, guidance), steps);                  // no cache to fill or read

        var rowsOf = NetworkRows(runs);
        var kept = new List<(FeatureCache Cache, int Step, Tensor Hidden)>();
        try
        {
            var output = Denoiser.Forward(model, x, t, y, scales, guidance, Network);
            foreach (var (cache, step, hidden) in kept) cache.Store(step, hidden);
            kept.Clear();
            return (output, steps);
        }
        finally
        {
            foreach (var k in kept) k.Hidden.Dispose();
        }

        Tensor Network(Tensor xs, Tensor ts, Tensor ys, Tensor? ws)
        {
            int[] fullRuns = Enumerable.Range(0, runs.Count).Where(i => full[i]).ToArray();
            int[] cachedRuns = Enumerable.Range(0, runs.Count).Where(i => !full[i]).ToArray();
            if (cachedRuns.Length == 0)
            {
                var (h, c) = model.ForwardBlocks(xs, ts, ys, ws);                                  // (M, T, D), (M, D)
                foreach (int i in fullRuns) Keep(i, h, rowsOf[i]);
                return model.ForwardFinal(h, c, xs.dtype);                                         // (M, C_out, H, W)
            }
            // Cached rows leave the blocks' batch (no padding); their stand-in joins the full rows' output in row order.
            var cachedIdx = tensor(cachedRuns.SelectMany(i => rowsOf[i]).ToArray(), device: xs.device);
            var cachedH = cat(cachedRuns.Select(i => runs[i].Cache.Predict(runs[i].StepsDone)).ToArray(), 0);  // (M_c, T, D)
            var hidden = zeros(new[] { xs.shape[0], cachedH.shape[1], cachedH.shape[2] }, dtype: cachedH.dtype, device: xs.device)
                .index_copy(0, cachedIdx, cachedH);                                                // (M, T, D)
            if (fullRuns.Length > 0)
            {
                var fullIdx = tensor(fullRuns.SelectMany(i => rowsOf[i]).ToArray(), device: xs.device);
                var (hFull, _) = model.ForwardBlocks(xs.index_select(0, fullIdx), ts.index_select(0, fullIdx), ys.index_select(0, fullIdx),
                    ws?.index_select(0, fullIdx));
                hidden = hidden.index_copy(0, fullIdx, hFull);
                long offset = 0;
                foreach (int i in fullRuns)
                {
                    Keep(i, hFull, Enumerable.Range(0, rowsOf[i].Length).Select(j => offset + j).ToArray());
                    offset += rowsOf[i].Length;
                }
            }
            var cAll = model.Condition(ts, ys, ws);                                                // (M, D), every row's own t, y (and w)
            return model.ForwardFinal(hidden, cAll, xs.dtype);                                     // (M, C_out, H, W)
        }

        void Keep(int i, Tensor hidden, long[] rows)
        {
            if (!runs[i].Options.IsCached) return;
            var mine = hidden.index_select(0, tensor(rows, device: hidden.device)).DetachFromDisposeScope(); // (rows_i, T, D)
            kept.Add((runs[i].Cache, runs[i].StepsDone, mine));
        }
    }

    /// <summary>Each run's rows in the network's input, in <see cref="Denoiser"/>'s layout: the N given rows in run
    /// order, then one unconditional copy of every guided row, in run order. A run's list is its conditional rows, then
    /// its unconditional ones: as many as its <see cref="SamplingRun.RowsThisStep"/>.</summary>
    private static long[][] NetworkRows(IReadOnlyList<SamplingRun> runs)
    {
        long cond = 0, uncond = runs.Sum(r => r.Rows);
        var rows = new long[runs.Count][];
        for (int i = 0; i < runs.Count; i++)
        {
            var r = runs[i];
            var list = new List<long>(r.RowsThisStep);
            for (int j = 0; j < r.Rows; j++) list.Add(cond++);
            if (r.RowsThisStep > r.Rows)
                for (int j = 0; j < r.Rows; j++) list.Add(uncond++);
            rows[i] = list.ToArray();
        }
        return rows;
    }
}
