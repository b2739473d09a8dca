using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The diffusion classifier on the demo model: it must find the class of the model's own samples.</summary>
public sealed class ClassGuessTests(ClassGuessTests.DemoSamples demo, ITestOutputHelper output) : IClassFixture<ClassGuessTests.DemoSamples>
{
    /// <summary>The demo model and two samples of every class (DDIM, 20 steps, guided), through 8 bits as a client sends them.</summary>
    public sealed class DemoSamples : IDisposable
    {
        public LoadedModel Model { get; } = LoadedModel.Load(Fixtures.DemoModel);
        public List<(int Label, ImageEdit Image)> Samples { get; }

        public DemoSamples()
        {
            using var scope = NewDisposeScope();
            var labels = Enumerable.Range(0, Model.Config.NumClasses).SelectMany(c => new[] { c, c }).ToArray();
            var options = new SamplingOptions { Sampler = SamplerKind.Ddim, Steps = 20, CfgScale = 4.0, Seed = 7 };
            var images = LatentSampler.Sample(Model.Model, labels.Select(l => (long)l).ToArray(), options, Model.Device);
            var pixels = Imaging.Pixels.ToUInt8(images);                                          // (20, 1, 28, 28)
            Samples = labels.Select((l, i) => (l, new ImageEdit(Imaging.Pixels.ToHwcBytes(pixels[i]), Model.ImageSize, Model.ImageChannels))).ToList();
        }

        public void Dispose() => Model.Dispose();
    }

    [Fact]
    public void Recovers_the_class_of_the_models_own_samples_most_of_the_time()
    {
        int right = demo.Samples.Count(s => ClassGuess.Guess(demo.Model, s.Image) == s.Label);
        output.WriteLine($"{right}/{demo.Samples.Count} recovered");
        Assert.True(right >= demo.Samples.Count * 8 / 10, $"only {right}/{demo.Samples.Count} recovered");
    }

    [Fact]
    public void Screening_round_bounds_the_cost_and_keeps_the_answer()
    {
        var screened = new ClassGuessOptions { Finalists = 3 };
        Assert.Equal(10 * 1 + 3 * 10, screened.Rows(10));
        Assert.Equal(10 * 10, ClassGuessOptions.Default.Rows(10));
        Assert.Equal(1000 + 10 * 10, ClassGuessOptions.Default.Rows(1000));
        int right = demo.Samples.Count(s => ClassGuess.Guess(demo.Model, s.Image, screened) == s.Label);
        output.WriteLine($"{right}/{demo.Samples.Count} recovered with 3 finalists");
        Assert.True(right >= demo.Samples.Count * 7 / 10, $"only {right}/{demo.Samples.Count} recovered");
    }

    [Fact]
    public void Same_picture_same_ranking_of_every_class()
    {
        var image = demo.Samples[0].Image;
        var first = ClassGuess.Rank(demo.Model, image);
        Assert.Equal(first, ClassGuess.Rank(demo.Model, image));
        Assert.Equal(Enumerable.Range(0, 10), first.Order());
    }

    [Fact]
    public void Wrong_size_is_refused()
    {
        var image = new ImageEdit(new byte[32 * 32], 32, 1);
        Assert.Throws<ArgumentException>(() => ClassGuess.Guess(demo.Model, image));
    }
}
