using System.Diagnostics;

namespace DiTServer.Core.Serving;

/// <summary>One accepted request on its way through the queue and the worker; its task completes exactly once.</summary>
public sealed class GenerationRequest
{
    private readonly TaskCompletionSource<GenerationResult> completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public GenerationRequest(string id, GenerationParameters parameters, TimeSpan timeout, CancellationToken cancellation)
    {
        Id = id;
        Parameters = parameters;
        Cancellation = cancellation;
        EnqueuedAt = Stopwatch.GetTimestamp();
        Deadline = EnqueuedAt + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
    }

    /// <summary>The HTTP request id; it tags the worker's log lines for this request.</summary>
    public string Id { get; }
    public GenerationParameters Parameters { get; }
    /// <summary>Fires when the client goes away; the worker drops the request's rows at the next step.</summary>
    public CancellationToken Cancellation { get; }
    /// <summary><see cref="Stopwatch"/> timestamps.</summary>
    public long EnqueuedAt { get; }
    public long Deadline { get; }

    /// <summary>Who sent it, for fair sharing: a configured API key's name or the remote address. Requests without one
    /// share the anonymous client.</summary>
    public string Client { get; init; } = "anonymous";

    /// <summary>Optional: told by the worker thread when the request is admitted (step 0) and after every step. It must
    /// return at once (post to a channel, set a field); it must never block or throw. Null for plain requests.</summary>
    public IProgress<GenerationProgress>? Progress { get; init; }

    /// <summary>Optional: low-resolution previews every k steps (see <see cref="PreviewRequest"/>). Null for none.</summary>
    public PreviewRequest? Preview { get; init; }

    // The rest is guarded by GenerationQueue's lock: where the request is, its order of arrival, and its node in its
    // client's queue while it waits there.
    internal QueueState QueueState { get; set; }
    internal long Sequence { get; set; }
    internal LinkedListNode<GenerationRequest>? QueueNode { get; set; }
    /// <summary>Takes it out of the queue when <see cref="Cancellation"/> fires while it waits.</summary>
    internal CancellationTokenRegistration QueueExit { get; set; }

    public Task<GenerationResult> Completion => completion.Task;
    public bool IsCompleted => completion.Task.IsCompleted;
    public TimeSpan Age => Stopwatch.GetElapsedTime(EnqueuedAt);
    public bool IsExpired => Stopwatch.GetTimestamp() > Deadline;

    public bool Succeed(GenerationResult result) => completion.TrySetResult(result);
    public bool Fail(Exception error) => completion.TrySetException(error);
    public bool Cancel() => completion.TrySetCanceled(Cancellation);
}
