using System.Threading.Channels;

namespace DiTServer.Core.Serving;

/// <summary>The bounded queue between the HTTP layer and the worker. Writers never wait: a full queue is an
/// immediate refusal (the endpoint answers 503), so no request thread blocks and nothing is dropped silently.</summary>
public sealed class GenerationQueue
{
    private readonly Channel<GenerationRequest> channel;
    // Wakes the worker's dedicated thread, which blocks here instead of awaiting (its torch state is thread-local).
    private readonly ManualResetEventSlim signal = new(false);
    // Tickets are handed out in channel order (the lock keeps "take a ticket, write" atomic among writers);
    // the reader counts what it took out, so a queued request's place is ticket − read + 1.
    private readonly Lock writeLock = new();
    private long issued, read;

    public GenerationQueue(int capacity)
    {
        Capacity = capacity;
        channel = Channel.CreateBounded<GenerationRequest>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait, // with TryWrite this means "refuse when full", never drop
        });
    }

    public int Capacity { get; }
    public int Count => channel.Reader.Count;
    public bool IsClosed { get; private set; }

    public EnqueueResult TryEnqueue(GenerationRequest request)
    {
        lock (writeLock)
        {
            request.Ticket = issued;
            if (channel.Writer.TryWrite(request))
            {
                issued++;
                signal.Set();
                return EnqueueResult.Accepted;
            }
            request.Ticket = -1;
        }
        return IsClosed ? EnqueueResult.Closed : EnqueueResult.Full;
    }

    /// <summary>Stops admitting: every later <see cref="TryEnqueue"/> returns <see cref="EnqueueResult.Closed"/>.</summary>
    public void Close()
    {
        IsClosed = true;
        channel.Writer.TryComplete();
        signal.Set();
    }

    internal bool TryPeek(out GenerationRequest request) => channel.Reader.TryPeek(out request!);
    internal bool TryRead(out GenerationRequest request)
    {
        if (!channel.Reader.TryRead(out request!)) return false;
        Interlocked.Increment(ref read);
        return true;
    }

    /// <summary>1-based place of a request still in the queue (1 = next to be admitted), or null once the worker
    /// has taken it out (or it was never accepted). Requests cancelled while queued still count until the worker
    /// reaches and discards them.</summary>
    public long? PositionOf(GenerationRequest request)
    {
        if (request.Ticket < 0) return null;
        long place = request.Ticket - Interlocked.Read(ref read) + 1;
        return place >= 1 ? place : null;
    }

    /// <summary>Blocks the calling (worker) thread until a request may be waiting, the queue closes, or <paramref name="wake"/> fires.</summary>
    internal void WaitForWork(CancellationToken wake)
    {
        signal.Reset();
        if (channel.Reader.TryPeek(out _) || IsClosed) return; // re-check after Reset: a write between the two is not lost
        try { signal.Wait(wake); }
        catch (OperationCanceledException) { }
    }

    /// <summary>Wakes a waiting worker (e.g. to begin shutdown).</summary>
    internal void Wake() => signal.Set();
}

public enum EnqueueResult
{
    Accepted,
    /// <summary>At capacity: retry later.</summary>
    Full,
    /// <summary>The server is shutting down.</summary>
    Closed,
}
