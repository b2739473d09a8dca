namespace DiTServer.Core.Serving;

/// <summary>One accepted request on its way through the scheduler and a worker; its task completes exactly once.</summary>
public sealed class GenerationRequest
{
    private readonly TaskCompletionSource<GenerationResult> completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public GenerationRequest(string id, GenerationParameters parameters, TimeSpan timeout, CancellationToken cancellation)
    {
        Id = id;
        Parameters = parameters;
        Timeout = timeout;
        Cancellation = cancellation;
    }

    /// <summary>The HTTP request id; it tags the worker's log lines for this request.</summary>
    public string Id { get; }
    public GenerationParameters Parameters { get; }
    /// <summary>Fires when the client goes away: a waiting request leaves at once, a running one at the next step.</summary>
    public CancellationToken Cancellation { get; }
    /// <summary>Most time from acceptance to the answer, queue wait included (then 504).</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Who sent it, for fair sharing: a configured API key's name or the remote address. Requests without one
    /// share the anonymous client.</summary>
    public string Client { get; init; } = "anonymous";

    /// <summary>The client's weight and own limits (a configured tenant's); the default is weight 1 and the server's limits.</summary>
    public ClientShare Share { get; init; } = ClientShare.Default;

    /// <summary>Optional: told (off the worker thread, in step order) when the request is admitted (step 0) and after
    /// every step. It must return at once and never throw. Null for plain requests.</summary>
    public IProgress<GenerationProgress>? Progress { get; init; }

    /// <summary>Optional: low-resolution previews every k steps (see <see cref="PreviewRequest"/>). Null for none.</summary>
    public PreviewRequest? Preview { get; init; }

    // The rest belongs to the Scheduler and is guarded by its lock: where the request is, its order of arrival, its
    // node in its client's queue while it waits there, its timestamps on the scheduler's clock, and the run it became.
    internal RequestState State { get; set; }
    internal long Sequence { get; set; }
    internal LinkedListNode<GenerationRequest>? QueueNode { get; set; }
    internal CancellationTokenRegistration CancelRegistration { get; set; }
    internal long EnqueuedAt { get; set; }
    internal long Deadline { get; set; }
    internal ScheduledRun? Run { get; set; }

    public Task<GenerationResult> Completion => completion.Task;
    public bool IsCompleted => completion.Task.IsCompleted;

    public bool Succeed(GenerationResult result) => completion.TrySetResult(result);
    public bool Fail(Exception error) => completion.TrySetException(error);
    public bool Cancel() => completion.TrySetCanceled(Cancellation);
}

/// <summary>Where a request is on its way through the <see cref="Scheduler"/> (guarded by its lock).</summary>
internal enum RequestState
{
    None,
    /// <summary>In its client's waiting queue.</summary>
    Waiting,
    /// <summary>Admitted: in a device's running set.</summary>
    Running,
    /// <summary>Gone: finished, failed, timed out, or its client left.</summary>
    Done,
}
