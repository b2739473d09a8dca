using System.Threading.Channels;

namespace DiTServer.Core.Serving;

/// <summary>The hand-off between the HTTP layer and the workers: a bounded channel inbox that request threads write to,
/// and the per-client waiting queues that the schedulers drain it into at every step and admit from.</summary>
/// <remarks>
/// <para>Writers never wait: a full queue is an immediate refusal (the endpoint answers 503), a client over its share
/// a 429, so no request thread blocks and nothing is dropped silently.</para>
/// <para>A request whose client leaves (or whose job is deleted) while it waits gives its place back at once and its
/// task ends as cancelled at once. A request in a client queue leaves that queue at once; one still in the inbox leaves
/// at the next drain, within one step (a channel can only give up its head), and is passed over there.</para>
/// <para>The client queues are shared by every device's scheduler rather than owned by one: a request drained by a
/// busy device would otherwise wait while another device idles.</para>
/// </remarks>
public sealed class GenerationQueue
{
    private readonly Channel<GenerationRequest> inbox;
    private readonly Lock gate = new();
    // Guarded by gate: the client queues (each oldest first), their owners' queued row-steps, and the counts.
    private readonly Dictionary<string, LinkedList<GenerationRequest>> clients = new();
    private readonly Dictionary<string, long> queuedCost = new();
    // Sequence numbers of requests that left while still in the inbox; taken out as the drain passes them.
    private readonly HashSet<long> leftInInbox = new();
    private int pending;
    private long nextSequence, drainedThrough = -1;
    // One per worker (several devices may share this queue): wakes its dedicated thread, which blocks instead of
    // awaiting (its torch state is thread-local). Each has its own so that one worker's Reset cannot swallow another's wake-up.
    private readonly List<ManualResetEventSlim> signals = new();
    private volatile bool closed;

    public GenerationQueue(int capacity, int? maxQueuedCostPerClient = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        MaxQueuedCostPerClient = maxQueuedCostPerClient;
        inbox = Channel.CreateBounded<GenerationRequest>(new BoundedChannelOptions(capacity)
        {
            FullMode = BoundedChannelFullMode.Wait, // TryWrite answers false instead of dropping anything
            SingleReader = false, // every device's worker drains it
        });
    }

    public GenerationQueue(ServingOptions options) : this(options.QueueCapacity, options.MaxQueuedCostPerClient) { }

    public int Capacity { get; }
    /// <summary>Most row-steps (<see cref="GenerationParameters.Cost"/>) one client may have waiting; null = no limit.</summary>
    public int? MaxQueuedCostPerClient { get; }
    /// <summary>Requests accepted and not yet admitted (in the inbox or a client queue), not counting those that left.</summary>
    public int Count { get { lock (gate) return pending; } }
    public bool IsClosed => closed;

    public EnqueueResult TryEnqueue(GenerationRequest request)
    {
        lock (gate)
        {
            if (closed) return EnqueueResult.Closed;
            if (pending >= Capacity) return EnqueueResult.Full;
            // Cost-aware and per client: one client's long, wide requests cannot take every place (a single request
            // larger than the cap is still accepted into an otherwise empty share, or nobody could ever send it).
            long queued = queuedCost.GetValueOrDefault(request.Client);
            if (MaxQueuedCostPerClient is int cap && queued > 0 && queued + request.Parameters.Cost > cap) return EnqueueResult.ClientLimit;
            request.Sequence = nextSequence;
            request.QueueState = QueueState.Inbox;
            // Written under the lock so that the inbox's order is the sequence order. It can be full only while requests
            // that already left still sit in it: then this writer drains it rather than refuse a request that has a place.
            if (!inbox.Writer.TryWrite(request))
            {
                DrainLocked();
                if (!inbox.Writer.TryWrite(request)) throw new InvalidOperationException("the inbox is full although the queue has places");
            }
            nextSequence++;
            pending++;
            queuedCost[request.Client] = queued + request.Parameters.Cost;
            // For a token that has already fired the callback runs right here (Lock is reentrant). Once a worker has
            // taken the request the callback finds it gone and does nothing: a running request is the worker's to drop.
            request.QueueExit = request.Cancellation.Register(() => Leave(request));
        }
        Wake();
        return EnqueueResult.Accepted;
    }

    /// <summary>Stops admitting: every later <see cref="TryEnqueue"/> returns <see cref="EnqueueResult.Closed"/>.</summary>
    public void Close()
    {
        closed = true;
        Wake();
    }

    /// <summary>The client left while its request waited: its place is free and its task ends now.</summary>
    private void Leave(GenerationRequest request)
    {
        lock (gate)
        {
            switch (request.QueueState)
            {
                case QueueState.Inbox: leftInInbox.Add(request.Sequence); break;
                case QueueState.Waiting: Unlink(request); break;
                default: return; // taken by a worker, or already gone
            }
            request.QueueState = QueueState.Left;
            Release(request);
        }
        request.Cancel();
    }

    /// <summary>Moves everything in the inbox into the client queues (a worker calls it before every step).</summary>
    internal void Drain()
    {
        lock (gate) DrainLocked();
    }

    private void DrainLocked()
    {
        while (inbox.Reader.TryRead(out var request))
        {
            drainedThrough = request.Sequence;
            if (leftInInbox.Remove(request.Sequence)) continue;
            if (!clients.TryGetValue(request.Client, out var queue)) clients[request.Client] = queue = new LinkedList<GenerationRequest>();
            request.QueueNode = queue.AddLast(request);
            request.QueueState = QueueState.Waiting;
        }
    }

    /// <summary>Every request in the client queues, oldest first (a copy: at most <see cref="Capacity"/> items).</summary>
    internal List<GenerationRequest> Waiting()
    {
        lock (gate) return clients.Values.SelectMany(q => q).OrderBy(r => r.Sequence).ToList();
    }

    /// <summary>The oldest waiting request of each client, oldest first.</summary>
    internal List<GenerationRequest> Heads()
    {
        lock (gate) return clients.Values.Select(q => q.First!.Value).OrderBy(r => r.Sequence).ToList();
    }

    /// <summary>Takes <paramref name="request"/> out of its client queue (admitted, or timed out); false when its
    /// client left meanwhile.</summary>
    internal bool TryRemove(GenerationRequest request)
    {
        CancellationTokenRegistration exit;
        lock (gate)
        {
            if (request.QueueState != QueueState.Waiting) return false;
            Unlink(request);
            request.QueueState = QueueState.Taken;
            Release(request);
            exit = request.QueueExit;
        }
        // Unregister, not Dispose: Dispose would wait for a callback running on another thread, which takes this lock.
        exit.Unregister();
        return true;
    }

    /// <summary>Takes every waiting request out, oldest first (shutdown: every queued request is answered).</summary>
    internal List<GenerationRequest> TakeAll()
    {
        Drain();
        return Waiting().Where(TryRemove).ToList();
    }

    /// <summary>1-based place of a request still waiting (1 = the oldest), or null once a worker has taken it out,
    /// it left, or it was never accepted.</summary>
    /// <remarks>Counts the waiting requests older than it: at most <see cref="Capacity"/> steps, once per job status or event.</remarks>
    public long? PositionOf(GenerationRequest request)
    {
        lock (gate)
        {
            long older = 0;
            switch (request.QueueState)
            {
                case QueueState.Waiting:
                    foreach (var queue in clients.Values)
                        foreach (var r in queue)
                            if (r.Sequence < request.Sequence) older++;
                    return older + 1;
                case QueueState.Inbox:
                    // Every request in a client queue is older; so are the inbox's requests ahead of it that have not left.
                    older = clients.Values.Sum(q => q.Count) + (request.Sequence - drainedThrough - 1);
                    older -= leftInInbox.Count(s => s < request.Sequence);
                    return older + 1;
                default:
                    return null;
            }
        }
    }

    /// <summary>A wake-up signal for one more worker.</summary>
    internal ManualResetEventSlim Subscribe()
    {
        var signal = new ManualResetEventSlim(false);
        lock (gate) signals.Add(signal);
        return signal;
    }

    /// <summary>Blocks the calling (worker) thread until a request may be waiting, the queue closes, or <paramref name="wake"/> fires.</summary>
    internal void WaitForWork(ManualResetEventSlim signal, CancellationToken wake)
    {
        signal.Reset();
        if (Count > 0 || closed) return; // re-check after Reset: a write between the two is not lost
        try { signal.Wait(wake); }
        catch (OperationCanceledException) { }
    }

    /// <summary>Wakes every waiting worker (work arrived, shutdown, a weight swap).</summary>
    internal void Wake()
    {
        ManualResetEventSlim[] all;
        lock (gate) all = signals.ToArray();
        foreach (var s in all) s.Set();
    }

    private void Unlink(GenerationRequest request)
    {
        var node = request.QueueNode!;
        var queue = node.List!;
        queue.Remove(node);
        request.QueueNode = null;
        if (queue.Count == 0) clients.Remove(request.Client);
    }

    /// <summary>Gives a request's place and its share of its client's row-steps back.</summary>
    private void Release(GenerationRequest request)
    {
        pending--;
        long left = queuedCost[request.Client] - request.Parameters.Cost;
        if (left > 0) queuedCost[request.Client] = left;
        else queuedCost.Remove(request.Client);
    }
}

/// <summary>Where a request is on its way through <see cref="GenerationQueue"/> (guarded by the queue's lock).</summary>
internal enum QueueState
{
    None,
    /// <summary>Written to the inbox, not yet drained.</summary>
    Inbox,
    /// <summary>In its client's queue.</summary>
    Waiting,
    /// <summary>Its client left while it waited.</summary>
    Left,
    /// <summary>A worker took it out (to run it, or to end it).</summary>
    Taken,
}

public enum EnqueueResult
{
    Accepted,
    /// <summary>At capacity: retry later.</summary>
    Full,
    /// <summary>The server is shutting down.</summary>
    Closed,
    /// <summary>This client already has <see cref="GenerationQueue.MaxQueuedCostPerClient"/> row-steps waiting: retry later (429).</summary>
    ClientLimit,
}
