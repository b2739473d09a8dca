using DiTServer.Core.Sampling;

namespace DiTServer.Api.Generation;

/// <summary>Runs variations' class guesses (<see cref="ClassGuess"/>) on a worker thread, a bounded number at a time:
/// a guess is no queued request (it has no rows to schedule), so without a bound a burst of uploads would stall the
/// batch for every client.</summary>
public sealed class ClassGuesses
{
    private int pending;

    /// <summary>Thrown when <see cref="MaxPending"/> guesses are pending already; answered 503 + Retry-After.</summary>
    public sealed class BusyException(string message) : Exception(message);

    /// <summary>Guesses waiting or running at most: one eighth of the queue's places, at least one.</summary>
    public static int MaxPending(ServingOptions o) => Math.Max(1, o.QueueCapacity / 8);

    /// <summary>The guess's forwards take at most a batch's rows, so one never outgrows what the device is sized for.</summary>
    public static ClassGuessOptions Options(ServingOptions o) => new() { MaxRows = Math.Max(1, o.MaxBatchRows) };

    /// <exception cref="BusyException">Too many guesses pending.</exception>
    /// <exception cref="InvalidOperationException">No worker runs.</exception>
    public async Task<int> GuessAsync(GenerationEngine engine, ImageEdit picture, ServingOptions o, CancellationToken cancellation)
    {
        if (Interlocked.Increment(ref pending) > MaxPending(o))
        {
            Interlocked.Decrement(ref pending);
            throw new BusyException($"{MaxPending(o)} class guesses are pending already; retry in {o.RetryAfterSeconds} s");
        }
        try
        {
            var options = Options(o);
            return await engine.RunOnWorkerAsync(model => ClassGuess.Guess(model, picture, options), cancellation);
        }
        finally { Interlocked.Decrement(ref pending); }
    }
}
