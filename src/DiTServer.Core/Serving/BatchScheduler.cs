namespace DiTServer.Core.Serving;

/// <summary>Decides what runs next: which queued requests join (admission) and which active runs go into the
/// next forward. It never touches tensors.</summary>
/// <remarks>Rows are counted as the forward sees them: two per guided image. Admission is FIFO without
/// skipping, so a large request at the head is not starved by small ones behind it.</remarks>
public sealed class BatchScheduler(ServingOptions options)
{
    public BatchingMode Mode => options.Batching;
    public int MaxBatchRows => options.MaxBatchRows;

    /// <summary>Whether new requests may join now. Step mode: between any two steps. Request mode: only when
    /// the previous batch has completely finished (the classic whole-request batcher).</summary>
    public bool AdmissionOpen(int activeCount) => Mode == BatchingMode.Step || activeCount == 0;

    /// <summary>Whether a request of <paramref name="rows"/> fits beside <paramref name="activeRows"/> already running.</summary>
    public bool Fits(int activeRows, int rows) => activeRows + rows <= MaxBatchRows;

    /// <summary>The runs for the next forward: all active ones in admission order, within <see cref="MaxBatchRows"/>
    /// (admission keeps their sum within the limit; the cap is a guard).</summary>
    internal IReadOnlyList<ActiveGeneration> Pick(IReadOnlyList<ActiveGeneration> active)
    {
        var picked = new List<ActiveGeneration>(active.Count);
        int rows = 0;
        foreach (var a in active)
        {
            if (rows + a.Rows > MaxBatchRows && picked.Count > 0) continue;
            picked.Add(a);
            rows += a.Rows;
        }
        return picked;
    }
}
