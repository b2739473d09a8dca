namespace DiTServer.Core.Serving;

/// <summary>The requests accepted and not yet admitted: one queue per client, oldest first, with the row-steps and
/// places each client holds. Owned by <see cref="Scheduler"/> and used only under its lock.</summary>
internal sealed class WaitingQueue
{
    private readonly Dictionary<string, LinkedList<GenerationRequest>> clients = new();
    private readonly Dictionary<string, long> queuedCost = new();
    private long nextSequence;

    /// <summary>Requests waiting, over all clients.</summary>
    public int Count { get; private set; }

    /// <summary>Row-steps (<see cref="GenerationParameters.Cost"/>) that <paramref name="client"/> has waiting.</summary>
    public long CostOf(string client) => queuedCost.GetValueOrDefault(client);

    /// <summary>Requests that <paramref name="client"/> has waiting.</summary>
    public int CountOf(string client) => clients.TryGetValue(client, out var queue) ? queue.Count : 0;

    public void Add(GenerationRequest request)
    {
        request.Sequence = nextSequence++;
        if (!clients.TryGetValue(request.Client, out var queue)) clients[request.Client] = queue = new LinkedList<GenerationRequest>();
        request.QueueNode = queue.AddLast(request);
        Count++;
        queuedCost[request.Client] = CostOf(request.Client) + request.Parameters.Cost;
    }

    /// <summary>Takes a waiting request out of its client's queue and gives its place and row-steps back.</summary>
    public void Remove(GenerationRequest request)
    {
        var node = request.QueueNode ?? throw new InvalidOperationException($"request {request.Id} is not waiting");
        var queue = node.List!;
        queue.Remove(node);
        request.QueueNode = null;
        if (queue.Count == 0) clients.Remove(request.Client);
        Count--;
        long left = CostOf(request.Client) - request.Parameters.Cost;
        if (left > 0) queuedCost[request.Client] = left;
        else queuedCost.Remove(request.Client);
    }

    /// <summary>The oldest waiting request of each client, oldest first.</summary>
    public List<GenerationRequest> Heads() => clients.Values.Select(q => q.First!.Value).OrderBy(r => r.Sequence).ToList();

    /// <summary>Every waiting request, oldest first (a copy).</summary>
    public List<GenerationRequest> All() => clients.Values.SelectMany(q => q).OrderBy(r => r.Sequence).ToList();

    /// <summary>1-based place of a waiting request among all waiting ones (1 = the oldest).</summary>
    public long PositionOf(GenerationRequest request)
    {
        long older = 0;
        foreach (var queue in clients.Values)
            foreach (var r in queue)
                if (r.Sequence < request.Sequence) older++;
        return older + 1;
    }
}
