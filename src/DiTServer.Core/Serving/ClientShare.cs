namespace DiTServer.Core.Serving;

/// <summary>A client's weight in fair sharing and its own limits, where they differ from the server's
/// (<see cref="ServingOptions"/>): a configured tenant's settings, or the defaults for everyone else.</summary>
/// <param name="Weight">Relative share of running rows and of each forward: a client of weight 2 gets twice the rows of
/// a client of weight 1 while both have work.</param>
/// <param name="MaxQueuedCost">Row-steps it may have waiting; null = <see cref="ServingOptions.MaxQueuedCostPerClient"/>.</param>
/// <param name="MaxQueuedRequests">Requests it may have waiting; null = <see cref="ServingOptions.EffectiveMaxQueuedRequestsPerClient"/>.</param>
public sealed record ClientShare(double Weight = 1, long? MaxQueuedCost = null, int? MaxQueuedRequests = null)
{
    public static ClientShare Default { get; } = new();
}
