namespace DiTServer.Core.Serving;

/// <summary>Where a request stands in the worker: <see cref="Step"/> of <see cref="TotalSteps"/> denoising steps done
/// (0 when it has just been admitted into the batch).</summary>
public readonly record struct GenerationProgress(int Step, int TotalSteps);
