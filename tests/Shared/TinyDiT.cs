using DiTServer.Core.Model;
using DiTServer.Core.Training;

namespace DiTServer.Tests.Shared;

/// <summary>The DiT that training, distillation and student-serving tests build: 8×8 one-channel images, one block of
/// width 32, so a training step takes milliseconds on any CPU.</summary>
public static class TinyDiT
{
    public static DiTConfig Config(int classes = 2) => new()
    {
        InputSize = 8, PatchSize = 2, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2, NumClasses = classes,
    };

    /// <summary>A servable tiny random model (one class per name) in <paramref name="folder"/> for distillation tests to
    /// distil from; written on first use only, so a test class may ask for it in every test.</summary>
    public static string Teacher(string folder, params string[] classNames)
    {
        if (!File.Exists(Path.Combine(folder, ModelExport.ManifestFile)))
            RandomModel.Write(folder, Config(classNames.Length), classNames, std: 0.1);
        return folder;
    }
}
