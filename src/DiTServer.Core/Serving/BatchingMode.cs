namespace DiTServer.Core.Serving;

/// <summary>When new requests may join the running batch.</summary>
public enum BatchingMode
{
    /// <summary>Between any two denoising steps: a short request never waits for a long one to finish.</summary>
    Step,
    /// <summary>Classic dynamic batching (Triton, TorchServe): a batch of whole requests runs to completion
    /// before the next batch is formed. Kept as the baseline for benchmarks.</summary>
    Request,
}
