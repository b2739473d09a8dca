using System.Threading.Channels;

namespace DiTServer.Core.Serving;

/// <summary>The bounded queue between the HTTP layer and the worker. Writers never wait: a full queue is an
/// immediate refusal (the endpoint answers 503), so no request thread blocks and nothing is dropped silently.</summary>
public sealed class GenerationQueue
{
    private readonly Channel<GenerationRequest> channel;
    // Wakes the worker's dedicated thread, which blocks here instead of awaiting (its torch state is thread-local).
    private readonly ManualResetEventSlim signal = new(false);

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
        if (channel.Writer.TryWrite(request))
        {
            signal.Set();
            return EnqueueResult.Accepted;
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
    internal bool TryRead(out GenerationRequest request) => channel.Reader.TryRead(out request!);

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
