using static TorchSharp.torch;

namespace DiTServer.Core.Serving;

/// <summary>What an engine core's inbox carries (a <see cref="System.Threading.Channels.Channel{T}"/> that its loop
/// drains before every step and awaits when it has nothing to run).</summary>
public abstract record EngineMessage
{
    private EngineMessage() { }

    /// <summary>Requests are waiting in the scheduler: an idle core looks for work.</summary>
    public sealed record Added : EngineMessage
    {
        public static Added Instance { get; } = new();
    }

    /// <summary>A running request's client left or its job was deleted: its rows leave at this step boundary.</summary>
    public sealed record Abort(GenerationRequest Request) : EngineMessage;

    /// <summary>Serve new weights: admission to this device pauses, its running requests finish, then the weights are
    /// copied in between steps (<see cref="Scheduler.BeginSwap"/>).</summary>
    public sealed record Swap(IReadOnlyDictionary<string, Tensor> Weights, string Description) : EngineMessage
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Tensor work that is no generation (a variation's class guess, <see cref="Pipeline.ClassGuess"/>), run on
    /// the core's thread between two steps, so the model is only ever called from its worker.</summary>
    /// <param name="Run">Given the core's model; it completes its caller's task itself, result or exception.</param>
    /// <param name="Abandon">Called instead when the loop ends before the work ran.</param>
    public sealed record Work(Action<Pipeline.LoadedModel> Run, Action Abandon) : EngineMessage;

    /// <summary>The host's shutdown time is up: running requests fail at this step boundary and the loop ends.</summary>
    public sealed record Stop : EngineMessage
    {
        public static Stop Instance { get; } = new();
    }
}
