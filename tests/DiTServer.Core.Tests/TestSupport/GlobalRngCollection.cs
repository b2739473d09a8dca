namespace DiTServer.Core.Tests;

/// <summary>Tests that seed torch's global generator (model initialisation, as train.py does) must not run beside
/// other tests that draw from it, or the "same seed, same weights" comparisons race.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalRngCollection
{
    public const string Name = "global torch RNG";
}
