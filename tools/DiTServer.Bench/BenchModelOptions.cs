using DiTServer.Core.Pipeline;
using System.CommandLine;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;

namespace DiTServer.Bench;

/// <summary>The model a benchmark runs: a model folder (<c>--model</c>) or a preset with random weights
/// (<c>--arch</c>, <c>--image-size</c>), on <c>--device</c> in <c>--precision</c>. Shared by the benchmark verbs so
/// that DiT-XL/2 can be measured where its weights are not available.</summary>
public sealed class BenchModelOptions
{
    public Option<string> Model { get; } = new("--model") { Description = "Model folder with model.json, or the manifest file (or use --arch)" };
    public Option<string> Arch { get; } = new("--arch") { Description = "Instead of --model: a preset with random weights (and a random SD VAE for latent " +
        "models), e.g. DiT-XL/2" };
    public Option<int> ImageSize { get; } = new("--image-size") { Description = "With --arch: image size in pixels", DefaultValueFactory = _ => 256 };
    public Option<string> Precision { get; } = new("--precision") { Description = "fp32, tf32 (CUDA) or bf16", DefaultValueFactory = _ => "fp32" };
    public Option<string> Device { get; } = new("--device") { Description = "cpu or cuda[:i]", DefaultValueFactory = _ => "cpu" };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { Model, Arch, ImageSize, Precision, Device }) command.Options.Add(option);
    }

    public LoadedModel Load(ParseResult parse)
    {
        var device = DeviceOption.Parse(parse.GetValue(Device)!);
        var precision = DeviceOption.ParsePrecision(parse.GetValue(Precision)!, device);
        return (parse.GetValue(Model), parse.GetValue(Arch)) switch
        {
            ({ } folder, null) => LoadedModel.Load(folder, device, precision),
            (null, { } preset) => Random(preset, parse.GetValue(ImageSize), device, precision),
            _ => throw new UsageException("give either --model or --arch"),
        };
    }

    public static LoadedModel Random(string preset, int imageSize, TorchSharp.torch.Device device, Precision precision)
    {
        try { return LoadedModel.Random(preset, imageSize, device, precision); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }
}
