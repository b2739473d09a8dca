using System.Threading.Channels;

namespace DiTServer.Core.Serving;

/// <summary>Owns the serving state that is not tensors (vLLM's scheduler): the front door (places and per-client
/// shares), the per-client waiting queues, each device's running set, fair sharing of every forward, and each device's
/// pause for a weight swap. <see cref="Schedule"/> returns a plain <see cref="SchedulerOutput"/>; the runner executes
/// it and <see cref="Update"/> takes the outcome. No tensors, so it is tested by hand.</summary>
/// <remarks>
/// <para>One scheduler serves every device of the process: the waiting queues are shared, so a device takes work
/// whenever it has room and none idles while another holds waiting requests. Each device has its own running set and
/// its engine core calls <see cref="Schedule"/> and <see cref="Update"/> for it; one lock guards everything here.</para>
/// <para>The front door never waits: a full queue is an immediate refusal (503), a client over its share a 429. A
/// waiting request whose client leaves gives its place back and ends at once; a running one leaves at the next step
/// boundary through its device's inbox (<see cref="EngineMessage.Abort"/>).</para>
/// <para>Costs are rows as the forward sees them: two per guided image. Every pool is shared between clients
/// (<see cref="GenerationRequest.Client"/>: a tenant, an API key's name or a remote address), each with a weight
/// (<see cref="GenerationRequest.Share"/>):</para>
/// <list type="bullet">
/// <item>Queue places: a client may have at most its share of requests and of row-steps waiting, and a client that
/// already waits is refused (429) once only <see cref="ServingOptions.EffectiveQueueReserve"/> places are free, so one
/// client can never take the last place while another has nothing queued.</item>
/// <item>Admission takes the oldest request of the client with the fewest running rows for its weight, and a client may
/// run at most <see cref="ServingOptions.MaxBatchRows"/> rows at once per device. All running rows stay within
/// <see cref="ServingOptions.EffectiveMaxRunningRows"/>, except that a client that runs nothing yet, or is under its fair
/// share of them (the budget split by weight among the clients with work), is admitted past it: with N active clients
/// each gets about 1/N of the forwards from the next step on, and a newcomer is never locked out by clients that came
/// first. A client's own requests
/// keep their order, and a head that does not fit blocks admission (no skipping), so a large request is never starved
/// by small ones.</item>
/// <item>Each step fills the forward round-robin over clients, least served first (rows stepped so far, divided by the
/// weight), so when the running rows exceed one forward the runs of clients over their share pause between steps while
/// a newcomer's run joins the next forward. A paused run's state is untouched, so its pixels are the same.</item>
/// </list>
/// <para>With one client and rows that fit one forward this is exactly a FIFO batcher: every run steps every time.</para>
/// </remarks>
public sealed class Scheduler
{
    private readonly ServingOptions options;
    private readonly Lock gate = new();
    private readonly WaitingQueue waiting = new();
    private readonly DeviceSchedule[] devices;
    private bool closed;

    public Scheduler(ServingOptions options, int devices = 1, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(devices, 1);
        this.options = options;
        Time = time ?? TimeProvider.System;
        this.devices = Enumerable.Range(0, devices).Select(_ => new DeviceSchedule()).ToArray();
    }

    /// <summary>What a device's schedule holds: its running runs, the rows each client has had stepped, its inbox, and
    /// a weight swap it is pausing for.</summary>
    private sealed class DeviceSchedule
    {
        public readonly List<ScheduledRun> Running = new();
        // Rows stepped per client while it has running runs, divided by its weight; a client that comes back starts level
        // with the least served, so it cannot claim the steps it was not there for.
        public readonly Dictionary<string, double> Served = new();
        public readonly HashSet<GenerationRequest> Aborted = new();
        public ChannelWriter<EngineMessage>? Inbox;
        public bool WakePending, Stopped;
        public EngineMessage.Swap? Swap;
        // One row's cached hidden state on this device's model (FeatureCache.RowBytes); 0 until the engine tells it.
        public long CacheRowBytes;
    }

    public TimeProvider Time { get; }
    public BatchingMode Mode => options.Batching;
    public int Capacity => options.QueueCapacity;
    /// <summary>Most row-steps (<see cref="GenerationParameters.Cost"/>) one client may have waiting; null = no limit.</summary>
    public int? MaxQueuedCostPerClient => options.MaxQueuedCostPerClient;
    public int Devices => devices.Length;
    /// <summary>Requests accepted and not yet admitted.</summary>
    public int Count { get { lock (gate) return waiting.Count; } }
    public bool IsClosed { get { lock (gate) return closed; } }

    /// <summary>A copy of a device's running set, in admission order.</summary>
    public IReadOnlyList<ScheduledRun> Running(int device = 0)
    {
        lock (gate) return devices[device].Running.ToList();
    }

    public int RunningRows(int device = 0)
    {
        lock (gate) return devices[device].Running.Sum(r => r.Rows);
    }

    /// <summary>Connects a device's engine inbox: the scheduler posts <see cref="EngineMessage.Added"/> and
    /// <see cref="EngineMessage.Abort"/> there.</summary>
    public void Connect(int device, ChannelWriter<EngineMessage> inbox)
    {
        lock (gate) devices[device].Inbox = inbox;
    }

    /// <summary>Tells the scheduler the size of one row's cached hidden state on <paramref name="device"/>'s model
    /// (<see cref="Sampling.FeatureCache.RowBytes"/>), so that admission counts each request's feature cache against
    /// <see cref="ServingOptions.MaxCacheBytes"/>. A weight swap keeps the architecture, so this never changes.</summary>
    public void SetCacheRowBytes(int device, long rowBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rowBytes);
        lock (gate) devices[device].CacheRowBytes = rowBytes;
    }

    /// <summary>The front door (any thread, never waits): accepts the request into its client's queue, or says why not.</summary>
    public EnqueueResult TryAdd(GenerationRequest request)
    {
        lock (gate)
        {
            if (closed) return EnqueueResult.Closed;
            if (waiting.Count >= Capacity) return EnqueueResult.Full;
            if (!WithinShare(request)) return EnqueueResult.ClientLimit;
            request.EnqueuedAt = Time.GetTimestamp();
            request.Deadline = request.EnqueuedAt + (long)(request.Timeout.TotalSeconds * Time.TimestampFrequency);
            waiting.Add(request);
            request.State = RequestState.Waiting;
            // For a token that has already fired the callback runs right here (Lock is reentrant) and the request
            // leaves at once, cancelled.
            request.CancelRegistration = request.Cancellation.Register(() => Cancelled(request));
            WakeLocked();
        }
        return EnqueueResult.Accepted;
    }

    /// <summary>A client's shares of the queue: places, row-steps, and the reserve kept for clients that wait for nothing.</summary>
    private bool WithinShare(GenerationRequest request)
    {
        var share = request.Share;
        int mine = waiting.CountOf(request.Client);
        if (mine == 0) return true; // a client with nothing queued may always take a free place (and the reserve is for it)
        if (mine >= (share.MaxQueuedRequests ?? options.EffectiveMaxQueuedRequestsPerClient)) return false;
        if (Capacity - waiting.Count <= options.EffectiveQueueReserve) return false;
        // Cost-aware: one client's long, wide requests cannot take every place (a single request larger than the cap is
        // still accepted into an otherwise empty share, or nobody could ever send it).
        long queued = waiting.CostOf(request.Client);
        return (share.MaxQueuedCost ?? MaxQueuedCostPerClient) is not { } cap || queued + request.Parameters.Cost <= cap;
    }

    /// <summary>Stops admitting: every later <see cref="TryAdd"/> returns <see cref="EnqueueResult.Closed"/>, and the
    /// next <see cref="Schedule"/> ends every waiting request (the server is shutting down).</summary>
    public void Close()
    {
        lock (gate)
        {
            closed = true;
            WakeLocked();
        }
    }

    /// <summary>1-based place of a waiting request (1 = the oldest), or null once it is admitted, gone or never accepted.</summary>
    public long? PositionOf(GenerationRequest request)
    {
        lock (gate) return request.State == RequestState.Waiting ? waiting.PositionOf(request) : null;
    }

    /// <summary>The client left: a waiting request leaves now (its place back, its task cancelled); a running one is
    /// aborted by its device at the next step boundary.</summary>
    private void Cancelled(GenerationRequest request)
    {
        ChannelWriter<EngineMessage>? inbox = null;
        bool left = false;
        lock (gate)
        {
            switch (request.State)
            {
                case RequestState.Waiting:
                    waiting.Remove(request);
                    request.State = RequestState.Done;
                    left = true;
                    break;
                case RequestState.Running:
                    inbox = devices[request.Run!.Device].Inbox;
                    if (inbox is null) devices[request.Run.Device].Aborted.Add(request); // tests drive the device by hand
                    break;
                default:
                    return;
            }
        }
        if (inbox is not null) inbox.TryWrite(new EngineMessage.Abort(request));
        if (left) request.Cancel();
    }

    /// <summary>A device's inbox said a running request's client left: it leaves at the next <see cref="Schedule"/>.</summary>
    public void Abort(int device, GenerationRequest request)
    {
        lock (gate)
            if (request.State == RequestState.Running && request.Run!.Device == device) devices[device].Aborted.Add(request);
    }

    /// <summary>Pauses admission to <paramref name="device"/> for a weight swap: its running requests finish on the old
    /// weights, then <see cref="Schedule"/> hands the swap out (<see cref="SchedulerOutput.Swap"/>) and nothing else
    /// until <see cref="EndSwap"/>. Queued requests wait meanwhile (or time out).</summary>
    /// <exception cref="InvalidOperationException">Another swap is pending on that device.</exception>
    public void BeginSwap(int device, EngineMessage.Swap swap)
    {
        lock (gate)
        {
            var d = devices[device];
            if (d.Swap is not null) throw new InvalidOperationException("another model activation is still in progress");
            d.Swap = swap;
        }
    }

    /// <summary>The swap is over (done or failed): admission to the device resumes.</summary>
    public void EndSwap(int device)
    {
        lock (gate) devices[device].Swap = null;
    }

    /// <summary>Plans one step of <paramref name="device"/>: lets go of what was aborted, timed out or refused by a
    /// shutdown, admits (unless paused for a swap or closed), and picks the runs of the next forward.</summary>
    public SchedulerOutput Schedule(int device = 0)
    {
        lock (gate)
        {
            var d = devices[device];
            d.WakePending = false;
            var ended = new List<EndedRequest>();
            long now = Time.GetTimestamp();
            foreach (var run in d.Running.ToList())
            {
                var request = run.Request;
                if (d.Aborted.Contains(request)) ended.Add(new EndedRequest(request, run, null));
                else if (now > request.Deadline)
                    ended.Add(new EndedRequest(request, run, new GenerationException(GenerationFailure.Timeout,
                        $"the request did not finish within Serving:RequestTimeout ({options.RequestTimeout}); it had done {run.StepsDone} of " +
                        $"{run.TotalSteps} steps")));
                else continue;
                RemoveRunning(d, run);
            }
            d.Aborted.Clear();
            foreach (var request in waiting.All())
            {
                GenerationException? why = null;
                if (now > request.Deadline)
                    why = new GenerationException(GenerationFailure.Timeout,
                        $"the request waited in the queue longer than Serving:RequestTimeout ({options.RequestTimeout})");
                else if (closed) why = new GenerationException(GenerationFailure.ShuttingDown, "the server is shutting down; the request was not started");
                else continue;
                LeaveQueue(request);
                ended.Add(new EndedRequest(request, null, why));
            }
            if (d.Swap is { } swap)
                return d.Running.Count == 0
                    ? new SchedulerOutput(device, [], ended, [], new HashSet<ScheduledRun>(), swap)
                    : Plan(device, d, [], ended);
            return Plan(device, d, closed ? [] : Admit(device, d, now), ended);
        }
    }

    private SchedulerOutput Plan(int device, DeviceSchedule d, List<ScheduledRun> admitted, List<EndedRequest> ended)
    {
        var batch = Pick(d);
        // Runs for which this step is a preview step keep its x̂₀ (the sampler computes it anyway).
        var previewing = batch.Where(r => r.Request.Preview is { } p && p.Wants(r.StepsDone + 1, r.TotalSteps)).ToHashSet();
        return new SchedulerOutput(device, admitted, ended, batch, previewing, null) { Paused = d.Running.Count - batch.Count };
    }

    /// <summary>Takes the runner's outcome for <paramref name="plan"/>: failed runs leave, the others count a step (or a
    /// pause), and the runs that reached their last step leave with their images.</summary>
    public SchedulerUpdate Update(SchedulerOutput plan, RunnerOutput outcome)
    {
        lock (gate)
        {
            var d = devices[plan.Device];
            var stepped = plan.Batch.ToHashSet();
            var ended = new List<EndedRequest>();
            foreach (var run in d.Running)
                if (!stepped.Contains(run) && !outcome.Failed.ContainsKey(run)) run.StepsPaused++;
            foreach (var (run, failure) in outcome.Failed)
            {
                if (!d.Running.Contains(run)) continue;
                RemoveRunning(d, run);
                ended.Add(EndedRequest.Failed(run, failure.What, failure.Error));
            }
            foreach (var run in plan.Batch)
            {
                if (outcome.Failed.ContainsKey(run)) continue;
                run.StepsDone++;
                d.Served[run.Client] = d.Served.GetValueOrDefault(run.Client) + run.LastStepRows / run.Request.Share.Weight;
            }
            var finished = new List<FinishedRun>();
            foreach (var (run, images) in outcome.Finished)
            {
                if (run.StepsDone < run.TotalSteps) throw new InvalidOperationException($"the runner finished {run} before its last step");
                RemoveRunning(d, run);
                finished.Add(new FinishedRun(run, images));
            }
            return new SchedulerUpdate(finished, ended);
        }
    }

    /// <summary>A device's loop is ending: its running requests leave with <paramref name="reason"/>; so does every
    /// waiting one when the scheduler is closed or no other device is left to run them.</summary>
    public IReadOnlyList<EndedRequest> EndAll(int device, string reason)
    {
        lock (gate)
        {
            var d = devices[device];
            d.Stopped = true;
            var ended = d.Running.ToList().Select(run =>
            {
                RemoveRunning(d, run);
                return new EndedRequest(run.Request, run, new GenerationException(GenerationFailure.ShuttingDown, reason));
            }).ToList();
            d.Swap = null;
            if (closed || devices.All(x => x.Stopped))
            {
                closed = true;
                foreach (var request in waiting.All())
                {
                    LeaveQueue(request);
                    ended.Add(new EndedRequest(request, null, new GenerationException(GenerationFailure.ShuttingDown,
                        "the server is shutting down; the request was not started")));
                }
            }
            return ended;
        }
    }

    private List<ScheduledRun> Admit(int device, DeviceSchedule d, long now)
    {
        var admitted = new List<ScheduledRun>();
        if (Mode == BatchingMode.Request && d.Running.Count > 0) return admitted;
        int budget = Mode == BatchingMode.Request ? options.MaxBatchRows : options.EffectiveMaxRunningRows;
        int rows = d.Running.Sum(r => r.Rows);
        long cacheBytes = d.Running.Sum(r => r.CacheBytes);
        var perClient = d.Running.GroupBy(r => r.Client).ToDictionary(g => g.Key, g => g.Sum(r => r.Rows));
        while (true)
        {
            var heads = waiting.Heads();
            // The clients with work for this device, running here or waiting, split the running rows by weight.
            var weights = d.Running.Select(r => r.Request).Concat(heads).GroupBy(r => r.Client).ToDictionary(g => g.Key, g => g.First().Share.Weight);
            double total = weights.Values.Sum();
            // The oldest request of each client, the client with the fewest running rows for its weight first.
            var next = heads
                .Where(r => perClient.GetValueOrDefault(r.Client) + r.Parameters.RowsPerStep <= options.MaxBatchRows)
                .OrderBy(r => perClient.GetValueOrDefault(r.Client) / r.Share.Weight).ThenBy(r => r.Sequence)
                .FirstOrDefault();
            if (next is null) return admitted;
            int mine = perClient.GetValueOrDefault(next.Client), wants = next.Parameters.RowsPerStep;
            // It fits the running rows; or its client runs nothing yet, or is under its fair share of them: then it is
            // admitted past the budget (at most one forward's rows per client), and the forward's round-robin takes its
            // rows from the clients over their share, whose admission waits until they are back under. Otherwise
            // admission stops here: a head is never skipped, so a large request is never starved by small ones behind it.
            bool fits = rows + wants <= budget;
            bool entitled = Mode == BatchingMode.Step && (mine == 0 || mine + wants <= budget * weights[next.Client] / total);
            if (!fits && !entitled) return admitted;
            // Memory is a hard limit, fair share or not: a head whose feature cache does not fit waits (alone it runs).
            long wantsCache = next.Parameters.CacheBytes(d.CacheRowBytes);
            if (d.Running.Count > 0 && cacheBytes + wantsCache > options.MaxCacheBytes) return admitted;
            waiting.Remove(next);
            var run = new ScheduledRun(next, device, now) { QueueWait = Time.GetElapsedTime(next.EnqueuedAt, now), CacheBytes = wantsCache };
            next.State = RequestState.Running;
            next.Run = run;
            if (!d.Served.ContainsKey(run.Client)) d.Served[run.Client] = d.Served.Count == 0 ? 0 : d.Served.Values.Min();
            d.Running.Add(run);
            admitted.Add(run);
            rows += run.Rows;
            cacheBytes += wantsCache;
            perClient[run.Client] = mine + run.Rows;
        }
    }

    /// <summary>The runs of the next forward, one at a time: each time the next run (in admission order) of the client
    /// that would be least served after taking it, i.e. with the smallest (rows stepped so far + rows already picked this
    /// step + that run's rows) over its weight: weighted fair queuing's virtual finish time, so a client of weight 2 gets
    /// twice the rows of one of weight 1, and a light run is not kept waiting behind heavy runs that merely started level
    /// with it. Ties go to the client with the fewest running rows (a newcomer), then the earliest admitted. A client
    /// whose next run does not fit what is left of the forward is passed over for this step.</summary>
    private List<ScheduledRun> Pick(DeviceSchedule d)
    {
        var picked = new List<ScheduledRun>();
        if (d.Running.Count == 0) return picked;
        var queues = d.Running.GroupBy(r => r.Client).Select(g => (Client: g.Key, Runs: new Queue<ScheduledRun>(g), Rows: g.Sum(r => r.Rows),
            First: g.Min(r => r.AdmittedAt))).ToList();
        var pickedRows = new Dictionary<string, int>();
        int rows = 0;
        while (true)
        {
            var next = queues
                .Where(q => q.Runs.Count > 0 && rows + q.Runs.Peek().StepRows <= options.MaxBatchRows)
                .OrderBy(q => d.Served.GetValueOrDefault(q.Client) // already over the weight
                    + (pickedRows.GetValueOrDefault(q.Client) + q.Runs.Peek().StepRows) / q.Runs.Peek().Request.Share.Weight)
                .ThenBy(q => q.Rows).ThenBy(q => q.First)
                .Select(q => q.Runs)
                .FirstOrDefault();
            if (next is null) break;
            var run = next.Dequeue();
            picked.Add(run);
            run.LastStepRows = run.StepRows;
            rows += run.StepRows;
            pickedRows[run.Client] = pickedRows.GetValueOrDefault(run.Client) + run.StepRows;
        }
        // Forward order = admission order (rows are independent; order only matters for logs).
        picked.Sort((a, b) => d.Running.IndexOf(a).CompareTo(d.Running.IndexOf(b)));
        return picked;
    }

    private void RemoveRunning(DeviceSchedule d, ScheduledRun run)
    {
        d.Running.Remove(run);
        Done(run.Request);
        if (!d.Running.Any(r => r.Client == run.Client)) d.Served.Remove(run.Client);
    }

    private void LeaveQueue(GenerationRequest request)
    {
        waiting.Remove(request);
        Done(request);
    }

    private static void Done(GenerationRequest request)
    {
        request.State = RequestState.Done;
        // Unregister, not Dispose: Dispose would wait for a callback running on another thread, which takes this lock.
        request.CancelRegistration.Unregister();
    }

    /// <summary>Tells every idle device's inbox that work may be waiting (once until that device schedules again).</summary>
    private void WakeLocked()
    {
        foreach (var d in devices)
        {
            if (d.WakePending || d.Inbox is null) continue;
            d.WakePending = true;
            d.Inbox.TryWrite(EngineMessage.Added.Instance);
        }
    }
}

public enum EnqueueResult
{
    Accepted,
    /// <summary>At capacity: retry later.</summary>
    Full,
    /// <summary>The server is shutting down.</summary>
    Closed,
    /// <summary>This client already has <see cref="Scheduler.MaxQueuedCostPerClient"/> row-steps waiting: retry later (429).</summary>
    ClientLimit,
}
