using DiTServer.Core.Imaging;

namespace DiTServer.Core.Serving;

/// <summary>A finished request: its PNGs (one per image, with the sample verb's metadata) and where its time went.</summary>
public sealed record GenerationResult(IReadOnlyList<GeneratedImage> Images, TimeSpan QueueWait, TimeSpan Total);
