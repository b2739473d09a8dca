using System.Runtime.CompilerServices;
using DiTServer.Tests.Shared;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Reads the reference tensors in ../shared/fixtures (computed by the official DiT and diffusers code).</summary>
public static class Fixtures
{
    public static string Root => FixturePaths.Root;

    public static string PathOf(string relative) => FixturePaths.Of(relative);

    /// <summary>The sampling settings of <c>dit-tiny/sample-K.safetensors</c>, from its header's metadata.</summary>
    public static Sampling.SamplingOptions SampleOptions(int k)
    {
        var meta = SafetensorsMetadata.Read(PathOf($"dit-tiny/sample-{k}.safetensors"));
        return new Sampling.SamplingOptions
        {
            Sampler = meta["sampler"] == "ddim" ? Sampling.SamplerKind.Ddim : Sampling.SamplerKind.Ddpm,
            Steps = int.Parse(meta["steps"]),
            CfgScale = double.Parse(meta["cfg_scale"], System.Globalization.CultureInfo.InvariantCulture),
            Seed = long.Parse(meta["seed"]),
        };
    }

    /// <summary>The repository's demo model, models/dit-fashion-mnist (a trained 10-class pixel model).</summary>
    public static string DemoModel { get; } = FindDemoModel();

    private static string FindDemoModel()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "DiTServer.sln"))) return Path.Combine(dir.FullName, "models", "dit-fashion-mnist");
        throw new DirectoryNotFoundException("DiTServer.sln not found above the test binaries");
    }

    /// <summary>All tensors of a safetensors file.</summary>
    public static Dictionary<string, Tensor> Load(string relative) => Safetensors.LoadStateDict(PathOf(relative));

    /// <summary>‖actual − expected‖ / ‖expected‖, in float64.</summary>
    public static double RelativeError(Tensor actual, Tensor expected)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var a = actual.to_type(float64);
        using var e = expected.to_type(float64);
        using var diff = (a - e).norm();
        using var norm = e.norm();
        return diff.item<double>() / Math.Max(norm.item<double>(), 1e-30);
    }

    /// <summary>Asserts relative error ≤ <paramref name="tolerance"/> (the fixtures README's 1e-4 by default).</summary>
    public static void AssertClose(Tensor expected, Tensor actual, double tolerance = 1e-4, [CallerArgumentExpression(nameof(actual))] string what = "")
    {
        double rel = RelativeError(actual, expected);
        Assert.True(rel <= tolerance, $"{what}: relative error {rel:E3} > {tolerance:E1}");
    }
}
