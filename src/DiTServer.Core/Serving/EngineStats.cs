namespace DiTServer.Core.Serving;

/// <summary>An engine's counters, written by its worker thread and read from any thread (health, metrics, tests).</summary>
internal sealed class EngineStats
{
    private volatile bool ready;
    private int activeCount, activeRows, maxRequestsInForward;
    private long forwards, liveTensors;

    public bool Ready { get => ready; set => ready = value; }

    public void Forward(int requests)
    {
        Interlocked.Increment(ref forwards);
        if (requests > Volatile.Read(ref maxRequestsInForward)) Volatile.Write(ref maxRequestsInForward, requests);
    }

    public void Occupancy(int active, int rows, long live)
    {
        Volatile.Write(ref activeCount, active);
        Volatile.Write(ref activeRows, rows);
        Interlocked.Exchange(ref liveTensors, live);
    }

    public EngineSnapshot Snapshot(int queueDepth) => new(ready, queueDepth, Volatile.Read(ref activeCount), Volatile.Read(ref activeRows),
        Interlocked.Read(ref forwards), Volatile.Read(ref maxRequestsInForward), Interlocked.Read(ref liveTensors));
}
