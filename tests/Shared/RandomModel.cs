using DiTServer.Core.Model;
using DiTServer.Core.Training;

namespace DiTServer.Tests.Shared;

/// <summary>Writes a servable model folder (model.json + model.safetensors) of a DiT with small random weights,
/// through the trainer's own export, for tests that need a model other than the fixtures'.</summary>
public static class RandomModel
{
    public static void Write(string folder, DiTConfig config, IReadOnlyList<string> classNames, double std = 0.05)
    {
        using var model = new DiT(config);
        model.RandomizeWeights(std);
        ModelExport.Write(folder, new DirectoryInfo(folder).Name, config, model, model: null, classNames);
    }
}
