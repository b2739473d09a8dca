using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Sampling;
using TorchSharp;

namespace DiTServer.Core.Tests;

/// <summary>Sampling and decoding leave no live tensors behind (libtorch memory is invisible to the .NET GC).</summary>
public class TensorLifetimeTests
{
    [Fact]
    public void Generating_images_leaves_no_live_tensors_on_the_thread()
    {
        using var model = LoadedModel.Load(Fixtures.PathOf("dit-tiny"));
        var options = new SamplingOptions { Steps = 5, CfgScale = 3.0, Seed = 4 };
        ImagePipeline.Generate(model, new[] { 1, 2 }, options); // warm-up: lazily created tensors, caches
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++)
            ImagePipeline.Generate(model, new[] { 1, 2, 3 }, options with { Sampler = i == 1 ? SamplerKind.Ddim : SamplerKind.Ddpm, Eta = i == 1 ? 0.5 : 0 });
        long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Assert.Equal(before, after);
    }

    [Fact]
    public void Copying_weights_into_a_model_leaves_no_live_tensors_on_the_thread()
    {
        var config = new DiTServer.Core.Model.DiTConfig { InputSize = 8, PatchSize = 4, InChannels = 1, HiddenSize = 32, Depth = 1, NumHeads = 2,
            NumClasses = 2 };
        using var target = new DiTServer.Core.Model.DiT(config);
        using var source = new DiTServer.Core.Model.DiT(config);
        var weights = source.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        StateDict.LoadStrict(target, weights, "warm-up");
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++) StateDict.LoadStrict(target, weights, "swap");
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Theory]
    [InlineData("DiT-XL/2", 675_129_632)]   // the paper's 675 M (input 32, 4 channels, 1000 classes)
    [InlineData("DiT-S/4", -1)]
    public void The_parameter_estimate_is_the_models_parameter_count(string preset, long expected)
    {
        var config = DiTServer.Core.Model.DiTConfig.FromPreset(preset);
        double estimate = DiTServer.Core.Training.TrainingFootprint.Parameters(config);
        if (expected > 0) Assert.Equal(expected, (long)estimate);
        if (preset == "DiT-S/4")
        {
            using var model = new DiTServer.Core.Model.DiT(config);
            Assert.Equal(model.parameters().Sum(p => p.numel()), (long)estimate);
        }
    }
}
