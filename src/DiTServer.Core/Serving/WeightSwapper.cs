using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace DiTServer.Core.Serving;

/// <summary>Hot weight swap for one engine: serves new weights for the same architecture without failing anyone.</summary>
/// <remarks>Admission pauses, the requests already running finish on the old weights, then the worker copies the new
/// ones in (strictly: same keys and shapes) and admission resumes. Queued requests wait meanwhile.</remarks>
/// <param name="replace">Copies the weights in (<see cref="ModelRunner.ReplaceWeights"/>); a delegate so that the
/// ordering can be tested without a model.</param>
public sealed class WeightSwapper(Action<IReadOnlyDictionary<string, Tensor>, string> replace, ILogger logger)
{
    private readonly Lock gate = new();
    private Swap? pending;

    private sealed record Swap(IReadOnlyDictionary<string, Tensor> Weights, string Description)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Asks for a swap; the task ends when the new weights serve (or faults with why they do not).</summary>
    /// <exception cref="InvalidOperationException">Another swap is still pending.</exception>
    public Task Request(IReadOnlyDictionary<string, Tensor> weights, string description)
    {
        var swap = new Swap(weights, description);
        lock (gate)
        {
            if (pending is not null) throw new InvalidOperationException("another model activation is still in progress");
            pending = swap;
        }
        return swap.Done.Task;
    }

    /// <summary>Worker thread, between steps. True while a swap waits for <paramref name="running"/> requests to finish
    /// (admission stays closed); performs it once none run.</summary>
    public bool TrySwap(int running)
    {
        Swap? swap;
        lock (gate) swap = pending;
        if (swap is null) return false;
        if (running > 0) return true;
        try
        {
            replace(swap.Weights, swap.Description);
            logger.LogInformation("Now serving {Weights}", swap.Description);
            swap.Done.TrySetResult();
        }
        catch (Exception e)
        {
            logger.LogError("Activation of {Weights} failed: {Error}; the previous weights keep serving", swap.Description, e.Message);
            swap.Done.TrySetException(e);
        }
        lock (gate) pending = null;
        return false;
    }

    /// <summary>The worker stopped: a pending swap will never happen.</summary>
    public void Cancel()
    {
        lock (gate)
        {
            pending?.Done.TrySetException(new InvalidOperationException("the generation worker stopped before the activation"));
            pending = null;
        }
    }
}
