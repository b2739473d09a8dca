namespace DiTServer.Core.Serving;

/// <summary>The bounded queue between the HTTP layer and the worker. Writers never wait: a full queue is an
/// immediate refusal (the endpoint answers 503), so no request thread blocks and nothing is dropped silently.
/// A request whose client leaves (or whose job is deleted) while it waits is taken out at once: its place is free
/// for the next request and its task ends as cancelled, without waiting for the worker to reach it.</summary>
/// <remarks>A linked list under a lock rather than a bounded channel: a channel counts a cancelled item against its
/// capacity until a reader takes it out, and only the head can be taken out.</remarks>
public sealed class GenerationQueue
{
    private readonly LinkedList<GenerationRequest> waiting = new();
    private readonly Lock gate = new();
    // One per worker (several devices may share this queue): wakes its dedicated thread, which blocks instead of
    // awaiting (its torch state is thread-local). Each has its own so that one worker's Reset cannot swallow another's wake-up.
    private readonly List<ManualResetEventSlim> signals = new();
    private volatile bool closed;

    public GenerationQueue(int capacity, int? maxQueuedCostPerClient = null)
    {
        Capacity = capacity;
        MaxQueuedCostPerClient = maxQueuedCostPerClient;
    }

    public GenerationQueue(ServingOptions options) : this(options.QueueCapacity, options.MaxQueuedCostPerClient) { }

    public int Capacity { get; }
    /// <summary>Most row-steps (<see cref="GenerationParameters.Cost"/>) one client may have waiting; null = no limit.</summary>
    public int? MaxQueuedCostPerClient { get; }
    public int Count { get { lock (gate) return waiting.Count; } }
    public bool IsClosed => closed;

    public EnqueueResult TryEnqueue(GenerationRequest request)
    {
        lock (gate)
        {
            if (closed) return EnqueueResult.Closed;
            if (waiting.Count >= Capacity) return EnqueueResult.Full;
            // Cost-aware and per client: one client's long, wide requests cannot take every place (a single request
            // larger than the cap is still accepted into an otherwise empty share, or nobody could ever send it).
            if (MaxQueuedCostPerClient is int cap)
            {
                long queued = 0;
                foreach (var r in waiting)
                    if (r.Client == request.Client) queued += r.Parameters.Cost;
                if (queued > 0 && queued + request.Parameters.Cost > cap) return EnqueueResult.ClientLimit;
            }
            request.QueueNode = waiting.AddLast(request);
            // For a token that has already fired the callback runs right here (Lock is reentrant). Once the worker has
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

    /// <summary>Takes a cancelled request out of the queue and ends its task; nothing if the worker already took it.</summary>
    private void Leave(GenerationRequest request)
    {
        if (TryRemove(request)) request.Cancel();
    }

    /// <summary>The waiting requests, oldest first (a copy: at most <see cref="Capacity"/> items).</summary>
    internal List<GenerationRequest> Waiting()
    {
        lock (gate) return waiting.ToList();
    }

    internal bool TryPeek(out GenerationRequest request)
    {
        lock (gate)
        {
            request = waiting.First?.Value!;
            return request is not null;
        }
    }

    /// <summary>Takes <paramref name="request"/> out if it is still queued; false when its client left meanwhile.</summary>
    internal bool TryRemove(GenerationRequest request)
    {
        CancellationTokenRegistration exit;
        lock (gate)
        {
            if (request.QueueNode is not { } node || node.List != waiting) return false;
            waiting.Remove(node);
            request.QueueNode = null;
            exit = request.QueueExit;
        }
        // Unregister, not Dispose: Dispose would wait for a callback running on another thread, which takes this lock.
        exit.Unregister();
        return true;
    }

    /// <summary>Takes the head out (shutdown: every queued request is answered).</summary>
    internal bool TryRead(out GenerationRequest request)
    {
        while (TryPeek(out request))
            if (TryRemove(request)) return true;
        return false;
    }

    /// <summary>1-based place of a request still in the queue (1 = next to be admitted), or null once the worker
    /// has taken it out, it left, or it was never accepted.</summary>
    /// <remarks>Walks the list: at most <see cref="Capacity"/> steps, called once per job status or event.</remarks>
    public long? PositionOf(GenerationRequest request)
    {
        lock (gate)
        {
            if (request.QueueNode is not { } node || node.List != waiting) return null;
            long place = 1;
            for (var n = waiting.First; n is not null && n != node; n = n.Next) place++;
            return place;
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
