using System.Text.Json;
using DiTServer.Core.Checkpoints;
using static TorchSharp.torch;

namespace DiTServer.Core.Evaluation;

/// <summary>Saves and loads the evaluation classifier as a folder: <c>classifier.json</c> + <c>classifier.safetensors</c>.</summary>
public static class ClassifierFile
{
    private sealed record Header(int ImageSize, int Channels, int NumClasses, double TestAccuracy);

    public static void Save(string folder, FashionClassifier model, double testAccuracy)
    {
        Directory.CreateDirectory(folder);
        CheckpointFile.SaveSafetensors(Path.Combine(folder, "classifier.safetensors"), model.state_dict());
        File.WriteAllText(Path.Combine(folder, "classifier.json"),
            JsonSerializer.Serialize(new Header(model.ImageSize, model.Channels, model.NumClasses, testAccuracy), new JsonSerializerOptions { WriteIndented = true }));
    }

    public static FashionClassifier Load(string folder)
    {
        var json = Path.Combine(folder, "classifier.json");
        if (!File.Exists(json)) throw new FileNotFoundException($"no classifier.json in {folder}", json);
        var header = JsonSerializer.Deserialize<Header>(File.ReadAllText(json))
                     ?? throw new InvalidDataException($"{json} is empty");
        var model = new FashionClassifier(header.ImageSize, header.Channels, header.NumClasses);
        using (var scope = NewDisposeScope())
            StateDict.LoadStrict(model, CheckpointFile.LoadStateDict(Path.Combine(folder, "classifier.safetensors")), folder);
        model.eval();
        return model;
    }
}
