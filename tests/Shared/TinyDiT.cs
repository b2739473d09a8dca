using DiTServer.Core.Model;

namespace DiTServer.Tests.Shared;

/// <summary>The DiT that training, distillation and student-serving tests build: 8×8 one-channel images, one block of
/// width 32, so a training step takes milliseconds on any CPU.</summary>
public static class TinyDiT
{
    public static DiTConfig Config(int classes = 2) => new()
    {
        InputSize = 8, PatchSize = 2, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = classes,
    };
}
