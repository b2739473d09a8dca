using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The trainer: official loss, learning, exact resume, crash-safe checkpoints, export to a served model.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class TrainingTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("dit-train-tests-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static readonly DiTConfig Tiny = TinyDiT.Config();

    private static readonly TrainingOptions Fast = new()
    {
        BatchSize = 8, LearningRate = 1e-3, EmaDecay = 0.999, EmaWarmup = true, Seed = 7, Steps = 1000,
    };

    private IdxDataset Synthetic(int count = 64)
    {
        var folder = Path.Combine(dir, "data");
        SyntheticIdx.Write(folder, count);
        return IdxDataset.FromFolder(folder);
    }

    [Fact]
    public void One_training_step_loss_terms_match_the_official_fixture()
    {
        var f = Fixtures.Load("dit-tiny/train_loss.safetensors");
        var config = DiTParityTests.TinyConfig;
        var data = new FixtureBatch(f["x_start"], f["y"]);
        using var trainer = new Trainer(config, Fast, data);
        using (var load = NewDisposeScope())
            StateDict.LoadStrict(trainer.Model, CheckpointFile.LoadStateDict(Fixtures.PathOf("dit-tiny/model.pt")), "dit-tiny/model.pt");
        trainer.Model.eval(); // the fixture was computed without label dropout
        using var scope = NewDisposeScope();
        var terms = trainer.Losses(f["x_start"], f["y"], f["t"], f["noise"]);
        Fixtures.AssertClose(f["mse"], terms.Mse);
        Fixtures.AssertClose(f["vb"], terms.Vb!);
        Fixtures.AssertClose(f["loss"], terms.Loss);
        // The same terms must drive the gradient: one backward pass reaches every trainable parameter.
        terms.Loss.mean().backward();
        Assert.All(trainer.Model.named_parameters().Where(p => p.parameter.requires_grad),
            p => Assert.True(p.parameter.grad is not null, $"{p.name} got no gradient"));
    }

    [Fact]
    public void Loss_falls_on_a_tiny_run()
    {
        using var data = Synthetic();
        using var trainer = new Trainer(Tiny, Fast with { BatchSize = 16, LearningRate = 3e-3 }, data);
        var losses = Enumerable.Range(0, 150).Select(_ => trainer.TrainStep().Loss).ToArray();
        double first = losses.Take(20).Average(), last = losses.TakeLast(20).Average();
        Assert.True(last < 0.6 * first, $"loss did not fall: first 20 steps {first:F4}, last 20 {last:F4}");
        Assert.Equal(150, trainer.Step);
    }

    [Fact]
    public void Resume_from_a_checkpoint_gives_the_same_weights_as_an_uninterrupted_run()
    {
        using var data = Synthetic();
        var info = new TrainingRunInfo { Config = Tiny, Options = Fast };
        using var straight = new Trainer(Tiny, Fast, data);
        for (int i = 0; i < 6; i++) straight.TrainStep();

        string ckpt = Path.Combine(dir, "run.ckpt");
        using (var first = new Trainer(Tiny, Fast, data))
        {
            for (int i = 0; i < 3; i++) first.TrainStep();
            TrainingCheckpoint.Save(ckpt, first, info);
        }
        using var resumed = new Trainer(Tiny, Fast with { Seed = 99 }, data); // different seed: everything must come from the file
        TrainingCheckpoint.Restore(ckpt, resumed);
        Assert.Equal(3, resumed.Step);
        for (int i = 0; i < 3; i++) resumed.TrainStep();

        Assert.Equal(6, resumed.Step);
        AssertSameParameters(straight.Model, resumed.Model, "model");
        AssertSameParameters(straight.Ema.Model, resumed.Ema.Model, "ema");
    }

    [Fact]
    public void A_checkpoint_write_killed_midway_leaves_the_last_good_checkpoint_loadable()
    {
        using var data = Synthetic();
        var info = new TrainingRunInfo { Config = Tiny, Options = Fast };
        string ckpt = Path.Combine(dir, "run.ckpt");
        using var trainer = new Trainer(Tiny, Fast, data);
        trainer.TrainStep();
        trainer.TrainStep();
        TrainingCheckpoint.Save(ckpt, trainer, info);
        var good = Snapshot(trainer.Model);

        // A later save that dies mid-write leaves only part of the temp file; the rename never happens.
        trainer.TrainStep();
        string full = Path.Combine(dir, "later.ckpt");
        TrainingCheckpoint.Save(full, trainer, info);
        var bytes = File.ReadAllBytes(full);
        File.WriteAllBytes(ckpt + ".tmp", bytes[..(bytes.Length / 2)]);

        using var restored = new Trainer(Tiny, Fast, data);
        var read = TrainingCheckpoint.Restore(ckpt, restored);
        Assert.Equal(2, read.Step);
        AssertSameParameters(good, Snapshot(restored.Model));

        // Had the half-written file been the checkpoint itself, loading says so instead of training on garbage.
        File.Copy(ckpt + ".tmp", Path.Combine(dir, "torn.ckpt"));
        using var other = new Trainer(Tiny, Fast, data);
        var e = Assert.ThrowsAny<InvalidDataException>(() => TrainingCheckpoint.Restore(Path.Combine(dir, "torn.ckpt"), other));
        Assert.Contains("torn.ckpt", e.Message);

        // The next save replaces the stale temp file and succeeds.
        TrainingCheckpoint.Save(ckpt, trainer, info);
        Assert.Equal(3, TrainingCheckpoint.ReadInfo(ckpt).Step);
        Assert.False(File.Exists(ckpt + ".tmp"));
    }

    [Fact]
    public void Cancelling_a_session_checkpoints_and_a_resumed_session_continues_the_loss_curve()
    {
        using var data = Synthetic();
        var options = Fast with { Steps = 8, LogEvery = 2, CheckpointEvery = 0 };
        var info = new TrainingRunInfo { Config = Tiny, Options = options, Name = "cancel-test" };
        string run = Path.Combine(dir, "run");
        using (var trainer = new Trainer(Tiny, options, data))
        using (var cts = new CancellationTokenSource())
        {
            var session = new TrainingSession(trainer, info, run);
            bool finished = session.Run(cts.Token, p => { if (p.Step == 5) cts.Cancel(); }); // as Ctrl+C after step 5
            Assert.False(finished);
            Assert.Equal(5, TrainingCheckpoint.ReadInfo(session.CheckpointPath).Step);
            // A row for step 6 written by a session that died before its checkpoint must not survive the resume.
            File.AppendAllText(session.LossPath, "6,0.5,0.4,0.1,1.0\n");
        }
        using (var resumed = new Trainer(Tiny, options, data))
        {
            var read = TrainingCheckpoint.Restore(Path.Combine(run, TrainingSession.CheckpointFile), resumed);
            Assert.True(new TrainingSession(resumed, read, run).Run(CancellationToken.None));
        }
        var steps = File.ReadAllLines(Path.Combine(run, TrainingSession.LossFile)).Skip(1).Select(l => l.Split(',')[0]);
        Assert.Equal(["2", "4", "6", "8"], steps);
        Assert.StartsWith("<svg", File.ReadAllText(Path.Combine(run, TrainingSession.LossPlotFile)));
        Assert.Equal(8, TrainingCheckpoint.ReadInfo(Path.Combine(run, TrainingSession.CheckpointFile)).Step);
    }

    [Fact]
    public void Ema_warmup_follows_min_decay_and_the_update_is_the_official_formula()
    {
        Assert.Equal(0.1, Ema.DecayAt(0.9999, true, 0), 12);
        Assert.Equal(11.0 / 20.0, Ema.DecayAt(0.9999, true, 10), 12);
        Assert.Equal(0.999, Ema.DecayAt(0.999, true, 100_000), 12);
        Assert.Equal(0.9999, Ema.DecayAt(0.9999, false, 0), 12);

        using var model = new DiT(Tiny);
        using var ema = new Ema(model);
        AssertSameParameters(model, ema.Model, "fresh EMA");
        var before = Snapshot(ema.Model);
        using (no_grad())
            foreach (var p in model.parameters()) p.add_(1.0);
        ema.Update(model, 0.75);
        using var scope = NewDisposeScope();
        foreach (var (name, p) in ema.Model.named_parameters())
        {
            var expected = before[name] * 0.75 + model.get_parameter(name)!.detach() * 0.25;
            Assert.True(allclose(p, expected, rtol: 1e-6, atol: 1e-7), $"{name} is not 0.75·ema + 0.25·param");
            Assert.False(p.requires_grad);
        }
    }

    [Fact]
    public void Exported_model_loads_for_serving_and_generates_a_png()
    {
        using var data = Synthetic();
        using var trainer = new Trainer(Tiny, Fast, data);
        for (int i = 0; i < 3; i++) trainer.TrainStep();
        string folder = Path.Combine(dir, "export");
        ModelExport.Write(folder, "tiny-test", trainer.Config, trainer.Ema.Model, trainer.Model, ["zero", "one"], "tiny-test.pt");

        using var loaded = LoadedModel.Load(folder);
        Assert.Equal("tiny-test", loaded.Name);
        Assert.Null(loaded.Vae);
        Assert.Equal(Tiny with { }, loaded.Config);
        AssertSameParameters(trainer.Ema.Model, loaded.Model, "served = EMA");
        var images = ImagePipeline.Generate(loaded, [0, 1], new SamplingOptions { Steps = 4, CfgScale = 2, Seed = 3 });
        Assert.Equal(2, images.Count);
        Assert.Equal("one", images[1].ClassName);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, images[0].Png[..4]);
        Assert.Equal((8, 8, 1), (images[0].Width, images[0].Height, images[0].Channels));

        // The .pt holds {"model", "ema"}; a loader that serves "ema" (as the official find_model) gets the EMA weights.
        using var scope = NewDisposeScope();
        var fromPt = CheckpointFile.LoadStateDict(Path.Combine(folder, "tiny-test.pt"));
        foreach (var (name, p) in trainer.Ema.Model.named_parameters())
            Assert.True(fromPt[name].equal(p).all().item<bool>(), $"{name} in the .pt is not the EMA weight");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Idx_reader_reads_gzip_and_raw_files_scaled_to_minus_one_one(bool gzip)
    {
        var folder = Path.Combine(dir, gzip ? "gz" : "raw");
        var (pixels, labels) = SyntheticIdx.Write(folder, count: 5, side: 8, classes: 3, gzip: gzip);
        using var data = IdxDataset.FromFolder(folder);
        Assert.Equal((5, 8, 1, 3), (data.Count, data.ImageSize, data.Channels, data.NumClasses));
        using var scope = NewDisposeScope();
        var (x, y) = data.Slice(0, 5);
        Assert.Equal(new long[] { 5, 1, 8, 8 }, x.shape);
        Assert.Equal(labels.Select(b => (long)b).ToArray(), y.data<long>().ToArray());
        var expected = tensor(pixels.Select(p => p / 127.5f - 1f).ToArray(), new long[] { 5, 1, 8, 8 });
        Assert.True(allclose(x, expected, rtol: 0, atol: 1e-6));
    }

    [Fact]
    public void Idx_reader_pads_with_background()
    {
        var folder = Path.Combine(dir, "pad");
        SyntheticIdx.Write(folder, count: 4, side: 8);
        using var data = IdxDataset.FromFolder(folder, padTo: 12);
        Assert.Equal(12, data.ImageSize);
        using var scope = NewDisposeScope();
        var (x, _) = data.Slice(0, 4);
        Assert.True(x[.., .., ..2, ..].eq(-1).all().item<bool>());
        Assert.True(x[.., .., .., 10..].eq(-1).all().item<bool>());
        var (unpadded, _) = IdxDataset.FromFolder(folder).Slice(0, 4);
        Assert.True(x[.., .., 2..10, 2..10].equal(unpadded).all().item<bool>());
    }

    [Fact]
    public void Idx_reader_rejects_bad_files_with_the_reason()
    {
        string bad = Path.Combine(dir, "bad-idx3-ubyte");
        File.WriteAllBytes(bad, "PK\x03\x04not an idx file"u8.ToArray());
        Assert.Contains("bad magic", Assert.Throws<InvalidDataException>(() => IdxDataset.ReadIdx(bad, 3)).Message);

        string wrongDims = Path.Combine(dir, "labels-as-images");
        SyntheticIdx.WriteIdx(wrongDims, new byte[4], [4], gzip: false);
        Assert.Contains("1 dimension(s), expected 3", Assert.Throws<InvalidDataException>(() => IdxDataset.ReadIdx(wrongDims, 3)).Message);

        string shortData = Path.Combine(dir, "short");
        SyntheticIdx.WriteIdx(shortData, new byte[10], [2, 3, 3], gzip: false);
        Assert.Contains("expected 18 data bytes", Assert.Throws<InvalidDataException>(() => IdxDataset.ReadIdx(shortData, 3)).Message);

        var mismatch = Path.Combine(dir, "mismatch");
        SyntheticIdx.Write(mismatch, count: 4);
        SyntheticIdx.WriteIdx(Path.Combine(mismatch, "train-labels-idx1-ubyte.gz"), new byte[3], [3], gzip: true);
        Assert.Contains("4 images but", Assert.Throws<InvalidDataException>(() => IdxDataset.FromFolder(mismatch)).Message);

        Assert.Throws<DirectoryNotFoundException>(() => IdxDataset.FromFolder(Path.Combine(dir, "nope")));
    }

    [Fact]
    public void Trainer_rejects_a_dataset_that_does_not_fit_the_model()
    {
        using var data = Synthetic();
        var e = Assert.Throws<ArgumentException>(() => new Trainer(Tiny with { InputSize = 16 }, Fast, data));
        Assert.Contains("1×8×8", e.Message);
    }

    private static Dictionary<string, Tensor> Snapshot(DiT model) =>
        model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    private static void AssertSameParameters(DiT expected, DiT actual, string what) =>
        AssertSameParameters(Snapshot(expected), Snapshot(actual), what);

    private static void AssertSameParameters(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual, string what = "")
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, e) in expected)
        {
            using var diff = (e - actual[name]).abs().max();
            double d = diff.item<float>();
            Assert.True(d <= 1e-6, $"{what}: {name} differs by {d:E2}");
        }
    }

    /// <summary>A dataset of one fixed batch (the fixture's), so a trainer can be built with its shape.</summary>
    private sealed class FixtureBatch(Tensor images, Tensor labels) : ITrainingDataset
    {
        public int Count => (int)images.shape[0];
        public int ImageSize => (int)images.shape[2];
        public int Channels => (int)images.shape[1];
        public int NumClasses => (int)labels.max().item<long>() + 1;
        public (Tensor Images, Tensor Labels) Batch(Tensor indices) => (images.index_select(0, indices), labels.index_select(0, indices));
        public void Dispose() { }
    }
}
