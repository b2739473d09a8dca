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
}
