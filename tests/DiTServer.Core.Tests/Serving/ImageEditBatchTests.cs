using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using DiTServer.Core.Serving;

namespace DiTServer.Core.Tests;

/// <summary>Image-to-image runs inside step batching: edit rows start at their own timestep and share each forward
/// with plain and cached generation rows through the scheduler and the runner, and every request gives the bytes it
/// gives alone (the sample verb's path).</summary>
public class ImageEditBatchTests
{
    [Fact]
    public void Edits_batched_with_plain_and_cached_generations_give_their_bytes_alone_and_count_only_their_steps()
    {
        using var loaded = LoadedModel.Load(Fixtures.PathOf("dit-tiny")); // latent model: the edit goes through the VAE
        int size = loaded.ImageSize;
        var rng = new Random(4);
        byte[] Image() { var b = new byte[size * size * 3]; rng.NextBytes(b); return b; }
        var mask = Enumerable.Range(0, size * size).Select(i => i / size < size / 2 ? (byte)255 : (byte)0).ToArray(); // top half redrawn
        var requests = new GenerationParameters[]
        {
            new(1, 2, new SamplingOptions { Steps = 10, CfgScale = 4, Seed = 7 }, new ImageEdit(Image(), size, 3, 0.5, mask)),
            new(3, 1, new SamplingOptions { Sampler = SamplerKind.UniPc, Steps = 9, CfgScale = 3, Seed = 2 }, new ImageEdit(Image(), size, 3, 0.7)),
            new(5, 1, new SamplingOptions { Sampler = SamplerKind.DpmPP3M, Steps = 8, CfgScale = 2, Seed = 5, CacheInterval = 2 },
                new ImageEdit(Image(), size, 3, 0.9, mask)),
            new(6, 2, new SamplingOptions { Sampler = SamplerKind.Ddim, Steps = 6, CfgScale = 4, Seed = 3 }),                     // plain
            new(8, 1, new SamplingOptions { Steps = 7, CfgScale = 4, Seed = 1, CacheInterval = 3 }),                                // plain, cached
            new(0, 1, new SamplingOptions { Sampler = SamplerKind.DpmPP2M, Steps = 10, CfgScale = 1, Seed = 9 }, new ImageEdit(Image(), size, 3, 0.2, mask)),
        };
        var scheduler = new Scheduler(new ServingOptions());
        var runner = new ModelRunner(loaded);
        long liveBefore = ModelRunner.LiveTensorsOnThisThread;
        var byRequest = new Dictionary<GenerationRequest, int>();
        for (int i = 0; i < requests.Length; i++)
        {
            var request = new GenerationRequest($"r{i}", requests[i], TimeSpan.FromHours(1), CancellationToken.None);
            Assert.Equal(EnqueueResult.Accepted, scheduler.TryAdd(request));
            byRequest[request] = i;
        }
        var finished = new Dictionary<int, byte[][]>();
        var stepsRun = new Dictionary<int, int>();
        int forwards = 0, mostRuns = 0;
        while (finished.Count < requests.Length)
        {
            var plan = scheduler.Schedule();
            Assert.NotEmpty(plan.Batch);
            var outcome = runner.Execute(plan);
            Assert.Empty(outcome.Failed);
            forwards++;
            mostRuns = Math.Max(mostRuns, plan.Batch.Count);
            foreach (var run in plan.Batch) stepsRun[byRequest[run.Request]] = stepsRun.GetValueOrDefault(byRequest[run.Request]) + 1;
            foreach (var (run, images) in outcome.Finished) finished[byRequest[run.Request]] = images;
            scheduler.Update(plan, outcome);
        }
        Assert.Equal(requests.Length, mostRuns); // every request shared forwards with all the others
        Assert.Equal(requests.Max(p => p.StepsRun), forwards);
        for (int i = 0; i < requests.Length; i++)
        {
            var p = requests[i];
            Assert.Equal(p.StepsRun, stepsRun[i]);
            var alone = ImagePipeline.Generate(loaded, p.Labels, p.Sampling, edit: p.Edit);
            for (int j = 0; j < p.NumImages; j++)
                Assert.True(alone[j].Hwc.SequenceEqual(finished[i][j]), $"request {i} image {j}: batched differs from alone");
        }
        Assert.Equal([5, 7, 8, 6, 7, 2], requests.Select(p => p.StepsRun));
        Assert.Equal(0, runner.ActiveRuns);
        Assert.Equal(liveBefore, ModelRunner.LiveTensorsOnThisThread); // the edits' tensors left with their runs
    }
}
