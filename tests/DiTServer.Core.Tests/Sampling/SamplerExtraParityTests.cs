using DiTServer.Core.Pipeline;
using System.Globalization;
using System.Text.Json;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The <c>sampler-extra-K</c> fixtures (shared/fixtures/README.md): DDIM with eta &gt; 0 (one noise draw per
/// step) and a DiT trained without learned sigma (FIXED_LARGE variance), every case in <c>sampler-extra-cases.json</c>:
/// final latents within 1e-4 relative error and pixels exact or ±1.</summary>
public class SamplerExtraParityTests
{
    public static IEnumerable<object[]> Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("sampler-extra-cases.json")));
        foreach (var model in doc.RootElement.EnumerateObject())
            foreach (var run in model.Value.GetProperty("runs").EnumerateArray())
                yield return [model.Name, run.GetProperty("file").GetString()!];
    }

    private static (SamplingOptions Options, int[] Labels) Case(string model, string file)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.PathOf("sampler-extra-cases.json")));
        var run = doc.RootElement.GetProperty(model).GetProperty("runs").EnumerateArray().Single(r => r.GetProperty("file").GetString() == file);
        var options = new SamplingOptions
        {
            Sampler = run.GetProperty("sampler").GetString() switch
            {
                "ddim" => SamplerKind.Ddim,
                "ddpm" => SamplerKind.Ddpm,
                var other => throw new InvalidDataException($"unknown sampler '{other}' in the fixture cases"),
            },
            Eta = run.GetProperty("eta").GetDouble(),
            Steps = run.GetProperty("steps").GetInt32(),
            CfgScale = run.GetProperty("cfg_scale").GetDouble(),
            Seed = run.GetProperty("seed").GetInt64(),
        };
        return (options, run.GetProperty("labels").EnumerateArray().Select(l => l.GetInt32()).ToArray());
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Latents_and_pixels_match_the_official_sampler(string model, string file)
    {
        var (options, labels) = Case(model, file);
        using var loaded = LoadedModel.Load(Fixtures.PathOf(model));
        using var scope = NewDisposeScope();
        var expected = Fixtures.Load($"{model}/{file}");
        Assert.Equal(labels, expected["labels"].data<long>().Select(l => (int)l));

        var latents = LatentSampler.Sample(loaded.Model, labels.Select(l => (long)l).ToArray(), options, loaded.Device);
        Fixtures.AssertClose(expected["samples"], latents, what: $"{model}/{file} samples");

        var images = ImagePipeline.Generate(loaded, labels, options);
        for (int i = 0; i < images.Count; i++)
        {
            var reference = expected["pixels"][i].permute(1, 2, 0).contiguous().data<byte>().ToArray();
            PipelineParityTests.AssertPixelsClose(reference, images[i].Hwc, $"{model}/{file} image {i}");
        }
    }
}
