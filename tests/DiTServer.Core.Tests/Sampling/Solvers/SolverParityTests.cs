using DiTServer.Core.Pipeline;
using System.Text.Json;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>DPM-Solver++ and UniPC against the authors' own code (fixtures "solver-K"): every case listed in
/// solver-cases.json, every step of the trajectory, every model timestep, the samples and the decoded pixels.</summary>
public class SolverParityTests
{
    /// <summary>One row per case in solver-cases.json, whatever models and cases it lists.</summary>
    public static IEnumerable<object[]> Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("solver-cases.json")));
        foreach (var model in doc.RootElement.EnumerateObject())
            for (int i = 0; i < model.Value.GetArrayLength(); i++)
                yield return new object[] { model.Name, i };
    }

    /// <summary>The case's settings as our options, read from its JSON entry.</summary>
    internal static (SamplingOptions Options, int[] Labels, string File, int ModelCalls) Case(string model, int index)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("solver-cases.json")));
        var c = doc.RootElement.GetProperty(model)[index];
        string solver = c.GetProperty("solver").GetString()!;
        int order = c.GetProperty("order").GetInt32();
        var kind = solver switch
        {
            "dpm++" => order switch
            {
                2 => SamplerKind.DpmPP2M,
                3 => SamplerKind.DpmPP3M,
                _ => throw new NotSupportedException($"dpm++ order {order}: no sampler name for it"),
            },
            "unipc" => SamplerKind.UniPc,
            _ => throw new NotSupportedException($"solver {solver}"),
        };
        var options = new SamplingOptions
        {
            Sampler = kind,
            Order = kind == SamplerKind.UniPc ? order : null,
            UniPcVariant = c.TryGetProperty("variant", out var v) ? SamplerNames.Variants[v.GetString()!] : null,
            Steps = c.GetProperty("steps").GetInt32(),
            Spacing = SamplerNames.Spacings[c.GetProperty("spacing").GetString()!],
            CfgScale = c.GetProperty("cfg_scale").GetDouble(),
            Guidance = c.GetProperty("guidance").GetString() == "all" ? GuidanceMode.All : GuidanceMode.Official,
            Seed = c.GetProperty("seed").GetInt64(),
        };
        var labels = c.GetProperty("labels").EnumerateArray().Select(l => l.GetInt32()).ToArray();
        return (options, labels, c.GetProperty("file").GetString()!, c.GetProperty("model_calls").GetInt32());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Trajectory_model_timesteps_and_samples_match_the_authors_code(string model, int index)
    {
        var (options, labels, file, modelCalls) = Case(model, index);
        using var loaded = LoadedModel.Load(Fixtures.PathOf(model));
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var f = Fixtures.Load($"{model}/{file}");
        Assert.Equal(labels.Select(l => (long)l), f["labels"].data<long>().ToArray());

        var trajectory = new Tensor?[options.Steps];
        var modelT = new List<float>();
        using var run = new SamplingRun(null, loaded.Config, labels.Select(l => (long)l).ToArray(), options, loaded.Device);
        run.OnStepFinished = (step, x) => { trajectory[step - 1] = x.clone().DetachFromDisposeScope(); };
        AssertRelativeMax(f["initial_noise"], run.X, $"{file} initial noise");
        while (!run.Done)
        {
            using var stepScope = NewDisposeScope();
            modelT.Add((float)run.ModelTimestep);
            var scales = Enumerable.Repeat(run.CfgScaleThisStep, run.Rows).ToArray();
            var output = Denoiser.Forward(loaded.Model, run.X, run.ModelTimesteps(), run.LabelTensor(), scales, options.Guidance);
            run.Advance(output);
        }

        Assert.Equal(modelCalls, modelT.Count);
        AssertRelativeMax(f["model_t"], tensor(modelT.ToArray()), $"{file} model_t");
        var refTrajectory = f["trajectory"];
        Assert.Equal(options.Steps, (int)refTrajectory.shape[0]);
        for (int s = 0; s < options.Steps; s++)
        {
            Assert.True(trajectory[s] is not null, $"{file}: step {s + 1} never finished");
            AssertRelativeMax(refTrajectory[s], trajectory[s]!, $"{file} trajectory step {s + 1}");
        }
        AssertRelativeMax(f["samples"], run.X, $"{file} samples");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Pixels_from_the_seed_match_the_authors_code(string model, int index)
    {
        var (options, labels, file, _) = Case(model, index);
        using var loaded = LoadedModel.Load(Fixtures.PathOf(model));
        using var scope = NewDisposeScope();
        var images = ImagePipeline.Generate(loaded, labels, options);
        var expected = Fixtures.Load($"{model}/{file}")["pixels"];
        Assert.Equal(labels.Length, images.Count);
        for (int i = 0; i < images.Count; i++)
            PipelineParityTests.AssertPixelsClose(expected[i].permute(1, 2, 0).contiguous().data<byte>().ToArray(), images[i].Hwc, $"{file} image {i}");
    }

    /// <summary>The fixtures' tolerance: max|out − ref| ≤ 1e-4·max|ref|.</summary>
    internal static void AssertRelativeMax(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var e = expected.to_type(float64);
        using var a = actual.to_type(float64);
        double maxRef = e.abs().max().item<double>();
        double maxDiff = (a - e).abs().max().item<double>();
        Assert.True(maxDiff <= 1e-4 * maxRef, $"{what}: max |out − ref| = {maxDiff:E3} > 1e-4 · {maxRef:E3}");
    }
}
