using System.Diagnostics;

namespace DiTServer.Core.Serving;

/// <summary>Decides what runs: which queued requests are admitted, which running ones take part in each forward, and
/// which leave (client gone, time up, done). It owns the running set and never touches tensors (vLLM's scheduler).</summary>
/// <remarks>
/// <para>Requests arrive through <see cref="GenerationQueue"/>'s channel inbox, drained at every step into per-client
/// queues.</para>
/// <para>Costs are rows as the forward sees them: two per guided image.</para>
/// <para>Fairness between clients (<see cref="GenerationRequest.Client"/>) at two points:</para>
/// <list type="bullet">
/// <item>Admission takes the oldest request of the client with the fewest running rows, and a client may run at most
/// <see cref="ServingOptions.MaxBatchRows"/> rows at once, while all running rows stay within
/// <see cref="ServingOptions.EffectiveMaxRunningRows"/>. A client's own requests keep their order, and a head that does
/// not fit blocks admission (no skipping), so a large request is never starved by small ones.</item>
/// <item>Each step fills the forward round-robin over clients, least-served client first (rows stepped so far), so when
/// the running rows exceed one forward a heavy client's runs pause between steps while a light client's run joins. A
/// paused run's state is untouched, so its pixels are the same.</item>
/// </list>
/// <para>With one client and rows that fit one forward this is exactly the old FIFO batcher: every run steps every time.</para>
/// </remarks>
public sealed class Scheduler(ServingOptions options, GenerationQueue queue)
{
    private readonly List<ScheduledRun> running = new();
    // Rows stepped per client while it has running runs; a client that comes back starts level with the least served,
    // so it cannot claim the steps it was not there for.
    private readonly Dictionary<string, long> served = new();

    public BatchingMode Mode => options.Batching;
    public IReadOnlyList<ScheduledRun> Running => running;
    public int RunningRows => running.Sum(r => r.Rows);

    /// <summary>Plans one engine step: drains the inbox into the client queues, lets go of what left or timed out, admits,
    /// and picks the runs of the next forward.</summary>
    /// <param name="admit">False while admission is paused (shutdown, weight swap): queued requests wait, unless their
    /// time runs out.</param>
    public SchedulerOutput Schedule(bool admit)
    {
        var ended = new List<EndedRequest>();
        queue.Drain();
        DropLeft(ended);
        ExpireWaiting(ended);
        var admitted = admit ? Admit() : [];
        return new SchedulerOutput(admitted, ended, Pick());
    }

    /// <summary>Takes the runner's outcome for <paramref name="plan"/>: failed runs leave, the others count a step (or a
    /// pause), and the runs that reached their last step leave and are returned for decoding.</summary>
    public IReadOnlyList<ScheduledRun> Update(SchedulerOutput plan, IReadOnlyDictionary<ScheduledRun, Exception> failed)
    {
        var stepped = plan.Batch.ToHashSet();
        foreach (var run in running)
            if (!stepped.Contains(run)) run.StepsPaused++;
        var finished = new List<ScheduledRun>();
        foreach (var run in plan.Batch)
        {
            if (failed.ContainsKey(run)) { Remove(run); continue; }
            run.StepsDone++;
            served[run.Client] = served.GetValueOrDefault(run.Client) + run.LastStepRows;
            if (run.StepsDone >= run.TotalSteps)
            {
                Remove(run);
                finished.Add(run);
            }
        }
        return finished;
    }

    /// <summary>Takes a run out of the running set (it failed outside a step, e.g. when the runner could not start it).</summary>
    public void Remove(ScheduledRun run)
    {
        if (!running.Remove(run)) return;
        if (!running.Any(r => r.Client == run.Client)) served.Remove(run.Client);
    }

    /// <summary>The loop is ending: every running request leaves with <paramref name="reason"/>, then every queued one
    /// (<see cref="DrainQueue"/>).</summary>
    public IReadOnlyList<EndedRequest> EndAll(string reason)
    {
        var ended = running.Select(run => new EndedRequest(run.Request, run, new GenerationException(GenerationFailure.ShuttingDown, reason))).ToList();
        running.Clear();
        served.Clear();
        return [.. ended, .. DrainQueue()];
    }

    /// <summary>Shutdown: every queued request leaves (cancelled, timed out, or refused because the server stops).</summary>
    public IReadOnlyList<EndedRequest> DrainQueue() =>
        queue.TakeAll().Select(request => EndIfLeft(request) ?? new EndedRequest(request, null,
            new GenerationException(GenerationFailure.ShuttingDown, "the server is shutting down; the request was not started"))).ToList();

    /// <summary>Running requests whose client left or whose time ran out leave before the next forward.</summary>
    private void DropLeft(List<EndedRequest> ended)
    {
        foreach (var run in running.ToList())
        {
            var request = run.Request;
            if (request.Cancellation.IsCancellationRequested) ended.Add(new EndedRequest(request, run, null));
            else if (request.IsExpired)
                ended.Add(new EndedRequest(request, run, new GenerationException(GenerationFailure.Timeout,
                    $"the request did not finish within Serving:RequestTimeout ({options.RequestTimeout}); it had done {run.StepsDone} of {run.TotalSteps} " +
                        $"steps")));
            else continue;
            Remove(run);
        }
    }

    /// <summary>Waiting requests whose time ran out (or whose client is leaving) leave their queue, admitted or not.</summary>
    private void ExpireWaiting(List<EndedRequest> ended)
    {
        foreach (var request in queue.Waiting())
            if (EndIfLeft(request) is { } end && queue.TryRemove(request)) ended.Add(end);
    }

    private List<ScheduledRun> Admit()
    {
        var admitted = new List<ScheduledRun>();
        if (Mode == BatchingMode.Request && running.Count > 0) return admitted;
        int budget = Mode == BatchingMode.Request ? options.MaxBatchRows : options.EffectiveMaxRunningRows;
        int rows = RunningRows;
        var perClient = running.GroupBy(r => r.Client).ToDictionary(g => g.Key, g => g.Sum(r => r.Rows));
        while (true)
        {
            // The oldest request of each client, least-running client first, then oldest first.
            var next = queue.Heads()
                .Where(r => perClient.GetValueOrDefault(r.Client) + r.Parameters.RowsPerStep <= options.MaxBatchRows)
                .OrderBy(r => perClient.GetValueOrDefault(r.Client)).ThenBy(r => r.Sequence)
                .FirstOrDefault();
            if (next is null || rows + next.Parameters.RowsPerStep > budget) return admitted;
            if (!queue.TryRemove(next)) continue; // its client left since the look: look again
            var run = new ScheduledRun(next, Stopwatch.GetTimestamp());
            if (!served.ContainsKey(run.Client)) served[run.Client] = served.Count == 0 ? 0 : served.Values.Min();
            running.Add(run);
            admitted.Add(run);
            rows += run.Rows;
            perClient[run.Client] = perClient.GetValueOrDefault(run.Client) + run.Rows;
        }
    }

    /// <summary>The runs of the next forward: round-robin over clients, least served first; within a client in admission
    /// order, each round taking that client's first run that still fits.</summary>
    private List<ScheduledRun> Pick()
    {
        var picked = new List<ScheduledRun>();
        if (running.Count == 0) return picked;
        var byClient = running.GroupBy(r => r.Client)
            .OrderBy(g => served.GetValueOrDefault(g.Key)).ThenBy(g => g.Min(r => r.AdmittedAt))
            .Select(g => g.ToList()).ToList();
        int rows = 0;
        bool progress = true;
        while (progress)
        {
            progress = false;
            foreach (var runs in byClient)
            {
                var fit = runs.FirstOrDefault(r => rows + r.StepRows <= options.MaxBatchRows);
                if (fit is null) continue;
                runs.Remove(fit);
                picked.Add(fit);
                fit.LastStepRows = fit.StepRows;
                rows += fit.StepRows;
                progress = true;
            }
        }
        // Forward order = admission order, as before the fairness rule (rows are independent; order only matters for logs).
        picked.Sort((a, b) => running.IndexOf(a).CompareTo(running.IndexOf(b)));
        return picked;
    }

    /// <summary>How a queued request leaves without running: its client left (no error) or its time ran out (timeout);
    /// null while it may still run.</summary>
    private EndedRequest? EndIfLeft(GenerationRequest request)
    {
        if (request.Cancellation.IsCancellationRequested || request.IsCompleted) return new EndedRequest(request, null, null);
        if (request.IsExpired)
            return new EndedRequest(request, null, new GenerationException(GenerationFailure.Timeout,
                $"the request waited in the queue longer than Serving:RequestTimeout ({options.RequestTimeout})"));
        return null;
    }
}
