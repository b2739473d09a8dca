namespace DiTServer.Core.Serving;

/// <summary>Why a request ended without images; the HTTP layer maps each to a status code.</summary>
public enum GenerationFailure
{
    /// <summary>Not finished within <c>Serving:RequestTimeout</c>.</summary>
    Timeout,
    /// <summary>The server stopped before the request could run or finish.</summary>
    ShuttingDown,
    /// <summary>The model or decoder threw for this request.</summary>
    Error,
    /// <summary>The request's sampling turned NaN or infinite (<see cref="Sampling.NonFiniteSampleException"/>): its settings
    /// are numerically unstable, not the server broken.</summary>
    NonFinite,
}

/// <summary>Completes a request's task when it ends without images (a client disconnect is a plain cancellation instead).</summary>
public sealed class GenerationException(GenerationFailure failure, string message, Exception? inner = null) : Exception(message, inner)
{
    public GenerationFailure Failure { get; } = failure;
}
