using System.Threading.Channels;
using DiTServer.Api.Tenants;

namespace DiTServer.Api.Jobs;

/// <summary>One asynchronous generation: its request in the engine, its state, its result once finished, and the
/// event streams (<c>GET /v1/jobs/{id}/events</c>) that follow it.</summary>
/// <remarks>The worker thread reports progress through <see cref="IProgress{T}"/>: that call takes this job's lock
/// for a few field writes and posts to each subscriber's bounded channel with <c>TryWrite</c> (never waits: a slow
/// reader loses its oldest progress and preview events, never the final one). Previews arrive the same way from the
/// thread pool, where the engine encodes them. Nothing here does I/O under the lock.</remarks>
public sealed class Job : IProgress<GenerationProgress>, IProgress<GenerationPreview>
{
    /// <summary>Events buffered per subscriber; past this a slow reader drops its oldest (progress) events.</summary>
    public const int SubscriberBuffer = 64;

    private readonly Lock gate = new();
    private readonly List<Channel<JobEvent>> subscribers = [];
    private readonly CancellationTokenSource cancel = new();
    private readonly TaskCompletionSource finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TimeProvider time;
    private JobState state = JobState.Queued;
    private int step, totalSteps;
    private string? error;
    private DateTimeOffset? startedAt, finishedAt;

    /// <param name="previewEvery">0: no previews; k: a <c>preview</c> event after every k-th step but the last.</param>
    /// <param name="previewMaxSide">Longest side of a preview in pixels (<see cref="JobOptions.PreviewMaxSize"/>).</param>
    /// <param name="caller">Who asked: the job's owner, and the client its request counts for.</param>
    public Job(string id, GenerationParameters parameters, TimeSpan timeout, TimeProvider time, int previewEvery = 0, int previewMaxSide = 64,
        Caller? caller = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(previewEvery);
        this.time = time;
        Id = id;
        Parameters = parameters;
        PreviewEvery = previewEvery;
        CreatedAt = time.GetUtcNow();
        totalSteps = parameters.StepsRun; // an edit runs only its last steps
        Owner = caller ?? Caller.Anonymous;
        Request = new GenerationRequest(id, parameters, timeout, cancel.Token)
        {
            Client = Owner.Client,
            Share = Owner.Share,
            Progress = this,
            Preview = previewEvery > 0 ? new PreviewRequest(previewEvery, previewMaxSide, this) : null,
        };
    }

    public string Id { get; }
    /// <summary>Who created it: with tenants, only that tenant may see, fetch or delete it.</summary>
    public Caller Owner { get; }
    public GenerationParameters Parameters { get; }
    /// <summary>Steps between previews; 0 when the job asked for none.</summary>
    public int PreviewEvery { get; }
    public DateTimeOffset CreatedAt { get; }
    /// <summary>What the engine runs; its cancellation token is this job's (DELETE), never an HTTP request's.</summary>
    public GenerationRequest Request { get; }
    public GenerationResult? Result { get; private set; }
    /// <summary>Why it failed (timeout, shutdown, model error); null otherwise.</summary>
    public GenerationFailure? Failure { get; private set; }
    /// <summary>Bytes its result holds in memory (PNGs plus raw pixels); 0 until it succeeded.</summary>
    public long ResultBytes { get; private set; }
    /// <summary>Completes when the job reached a final state.</summary>
    public Task Finished => finished.Task;
    public int SubscriberCount { get { lock (gate) return subscribers.Count; } }

    public JobSnapshot Snapshot()
    {
        lock (gate) return SnapshotLocked();
    }

    /// <summary>Called by the worker thread at admission (step 0) and after every step.</summary>
    void IProgress<GenerationProgress>.Report(GenerationProgress value)
    {
        lock (gate)
        {
            if (state.IsFinal()) return;
            if (state == JobState.Queued)
            {
                state = JobState.Running;
                startedAt = time.GetUtcNow();
            }
            step = value.Step;
            totalSteps = value.TotalSteps;
            Broadcast(JobEvent.For(SnapshotLocked()));
        }
    }

    /// <summary>Called from the thread pool with the PNGs of a preview step; dropped once the job is final (the
    /// engine delivers every preview before the result, so that only happens after a cancel or a failure).</summary>
    void IProgress<GenerationPreview>.Report(GenerationPreview value)
    {
        lock (gate)
        {
            if (state.IsFinal()) return;
            Broadcast(new JobEvent(JobEvent.PreviewType, SnapshotLocked(), value));
        }
    }

    /// <summary>Follows the engine's answer to the end; the store calls it once, right after the request was queued.</summary>
    internal async Task RunAsync()
    {
        try
        {
            var result = await Request.Completion;
            Finish(JobState.Succeeded, null, result, null);
        }
        catch (OperationCanceledException)
        {
            Finish(JobState.Cancelled, "cancelled", null, null);
        }
        catch (GenerationException e)
        {
            Finish(JobState.Failed, e.Message, null, e.Failure);
        }
        catch (Exception e)
        {
            Finish(JobState.Failed, $"generation failed: {e.Message}", null, GenerationFailure.Error);
        }
    }

    /// <summary>Cancels a queued or running job: it is final at once; the worker drops its rows at the next step
    /// (or discards it when it reaches the head of the queue). False when it had already finished.</summary>
    public bool Cancel()
    {
        if (!Finish(JobState.Cancelled, "cancelled by DELETE /v1/jobs/" + Id, null, null)) return false;
        cancel.Cancel();
        Request.Cancel();
        return true;
    }

    /// <summary>A stream of this job's events: first its current state, then every change; it completes after the
    /// final event. Dispose the subscription when the reader leaves.</summary>
    public Subscription Subscribe()
    {
        var channel = Channel.CreateBounded<JobEvent>(new BoundedChannelOptions(SubscriberBuffer)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.DropOldest,
        });
        lock (gate)
        {
            var current = JobEvent.For(SnapshotLocked());
            channel.Writer.TryWrite(current);
            if (current.IsFinal) channel.Writer.TryComplete();
            else subscribers.Add(channel);
        }
        return new Subscription(this, channel);
    }

    private bool Finish(JobState final, string? reason, GenerationResult? result, GenerationFailure? failure)
    {
        lock (gate)
        {
            if (state.IsFinal()) return false;
            state = final;
            error = final == JobState.Succeeded ? null : reason;
            finishedAt = time.GetUtcNow();
            Result = result;
            Failure = failure;
            if (result is not null)
            {
                ResultBytes = result.Images.Sum(i => (long)i.Png.Length + i.Hwc.Length);
                step = totalSteps;
            }
            Broadcast(JobEvent.For(SnapshotLocked()));
            foreach (var s in subscribers) s.Writer.TryComplete();
            subscribers.Clear();
        }
        finished.TrySetResult();
        return true;
    }

    private JobSnapshot SnapshotLocked() => new(state, step, totalSteps, error, CreatedAt, startedAt, finishedAt);

    private void Broadcast(JobEvent e)
    {
        foreach (var s in subscribers) s.Writer.TryWrite(e);
    }

    private void Unsubscribe(Channel<JobEvent> channel)
    {
        lock (gate) subscribers.Remove(channel);
        channel.Writer.TryComplete();
    }

    /// <summary>One reader's view of <see cref="Job"/>'s events.</summary>
    public sealed class Subscription(Job job, Channel<JobEvent> channel) : IDisposable
    {
        public ChannelReader<JobEvent> Events => channel.Reader;
        public void Dispose() => job.Unsubscribe(channel);
    }
}
