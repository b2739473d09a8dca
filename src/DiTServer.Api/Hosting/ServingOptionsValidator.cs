namespace DiTServer.Api.Hosting;

/// <summary>The cross-field rules of <see cref="ServingOptions"/> that data annotations cannot express, including the one
/// against the host's shutdown timeout.</summary>
public sealed class ServingOptionsValidator(IOptions<HostOptions> host) : IValidateOptions<ServingOptions>
{
    public ValidateOptionsResult Validate(string? name, ServingOptions options)
    {
        if (options.Check() is { } error) return ValidateOptionsResult.Fail(error);
        var shutdown = host.Value.ShutdownTimeout;
        // Past the host's timeout Kestrel aborts open connections: a request cut off then would get no answer at all.
        if (shutdown != Timeout.InfiniteTimeSpan && options.DrainTimeout >= shutdown)
            return ValidateOptionsResult.Fail(
                $"Serving:DrainTimeout ({options.DrainTimeout}) must be shorter than the host's shutdown timeout ({shutdown}, setting " +
                    $"shutdownTimeoutSeconds): running requests are answered 503 when the drain time is up, and the answers must go out before the host " +
                    $"aborts the connections");
        return ValidateOptionsResult.Success;
    }
}
