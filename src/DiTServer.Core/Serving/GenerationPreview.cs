namespace DiTServer.Core.Serving;

/// <summary>Previews of a request's images after <see cref="Step"/> of <see cref="TotalSteps"/> steps: one PNG per
/// image (in batch order), each <see cref="Width"/>×<see cref="Height"/>, made from the model's predicted x₀.</summary>
public sealed record GenerationPreview(int Step, int TotalSteps, int Width, int Height, IReadOnlyList<byte[]> Pngs);
