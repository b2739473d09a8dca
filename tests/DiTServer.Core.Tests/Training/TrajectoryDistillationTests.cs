using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using DiTServer.Core.Training;
using DiTServer.Tests.Shared;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>Distilling a guidance-conditioned few-step student from a tiny random teacher: its start, its loss, its
/// export and strict loading, its resume.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class TrajectoryDistillationTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("dit-distill-tests-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    private static readonly DiTConfig Tiny = TinyDiT.Config();

    private static readonly TrainingOptions Fast = new()
    {
        BatchSize = 16, LearningRate = 3e-3, EmaDecay = 0.9, EmaWarmup = true, Seed = 3, Steps = 6, LogEvery = 1, CheckpointEvery = 0,
    };

    private string Teacher() => TinyDiT.Teacher(Path.Combine(dir, "teacher"), "a", "b");

    private DistillationSettings Settings(int studentSteps = 2) => new()
    {
        Teacher = Teacher(), StudentSteps = studentSteps, TeacherSteps = 4, Trajectories = 32, MinGuidance = 1, MaxGuidance = 6,
    };

    [Fact]
    public void A_student_starts_as_its_teachers_conditional_model_whatever_the_guidance_scale()
    {
        using var teacher = LoadedModel.Load(Teacher());
        using var student = new DiT(Tiny with { GuidanceConditioned = true });
        using (var start = NewDisposeScope()) StateDict.LoadStrict(student, TrajectoryDistillation.StudentStart(teacher.Model, student), "start");
        student.eval();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var x = randn(3, 1, 8, 8, generator: new Generator(5));
        var t = tensor(new float[] { 999, 500, 3 });
        var y = tensor(new long[] { 0, 1, 1 });
        var cond = teacher.Model.forward(x, t, y);
        Assert.True(student.forward(x, t, y, tensor(new float[] { 1, 4, 6 })).equal(cond).all().item<bool>());
        // w is a student's input, and only a student's.
        Assert.Throws<ArgumentException>(() => student.forward(x, t, y));
        Assert.Throws<ArgumentException>(() => teacher.Model.forward(x, t, y, tensor(new float[] { 1, 1, 1 })));
    }

    /// <summary>The loss's student step is the served sampler's step: on trajectories the student itself made with its
    /// default sampler (dpmpp_2m order 1), every landing is exact.</summary>
    [Fact]
    public void The_loss_is_zero_on_the_students_own_dpmpp_order_1_trajectories()
    {
        var config = Tiny with { GuidanceConditioned = true };
        using var student = new DiT(config);
        student.RandomizeWeights(0.1);
        student.eval();
        const int K = 4;
        var options = new SamplingOptions { Sampler = SamplerKind.DpmPP2M, Order = 1, Steps = K, CfgScale = 3, Seed = 8, GuidanceInModel = true };
        var states = new Tensor[K + 1];
        using (var _ = no_grad())
        using (var run = new SamplingRun(null, config, [0, 1, 1], options, CPU))
        {
            states[0] = run.X.clone().DetachFromDisposeScope();
            run.OnStepFinished = (k, x) => states[k] = x.clone().DetachFromDisposeScope();
            while (!run.Done)
            {
                using var scope = NewDisposeScope();
                run.Advance(BatchForward.Run(student, [run], GuidanceMode.Official).Output);
            }
        }
        using var bank = TeacherTrajectories.Of(stack(states, 1), tensor(new long[] { 0, 1, 1 }), full(3, 3f));
        foreach (var s in states) s.Dispose();
        using var __ = no_grad();
        using var check = NewDisposeScope();
        var rows = arange(3, dtype: int64).repeat_interleave(K);
        var steps = arange(K, dtype: int64).repeat(3);
        var losses = TrajectoryDistillation.Losses(student, bank, K, rows, steps);
        Assert.True(losses.max().item<float>() < 1e-8, $"landing errors {string.Join(", ", losses.data<float>().ToArray())}");
    }

    [Fact]
    public void Distillation_lowers_the_students_landing_loss()
    {
        using var teacher = LoadedModel.Load(Teacher());
        var settings = Settings();
        using var bank = TeacherTrajectories.LoadOrMake(dir, teacher, settings, seed: 1, CancellationToken.None);
        Assert.Equal(32, bank.Count);
        Assert.Equal(new long[] { 32, 5, 1, 8, 8 }, bank.States.shape);
        var config = Tiny with { GuidanceConditioned = true };
        using var trainer = new Trainer(config, Fast, bank, settings.StudentSteps);
        using (var start = NewDisposeScope())
        {
            var weights = TrajectoryDistillation.StudentStart(teacher.Model, trainer.Model);
            StateDict.LoadStrict(trainer.Model, weights, "start");
        }

        double Loss()
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            // Every (trajectory, student step) pair once: the loss on the whole bank, not a random batch.
            var rows = arange(32, dtype: int64).repeat_interleave(settings.StudentSteps);
            var steps = arange(settings.StudentSteps, dtype: int64).repeat(32);
            return TrajectoryDistillation.Losses(trainer.Model, bank, settings.StudentSteps, rows, steps).mean().item<float>();
        }

        double before = Loss();
        for (int i = 0; i < 80; i++) trainer.TrainStep();
        double after = Loss();
        Assert.True(after < 0.5 * before, $"the landing loss did not fall: {before:G4} before, {after:G4} after 80 steps");
    }

    [Fact]
    public void The_exported_student_loads_strictly_names_its_teacher_and_steps_and_a_plain_dit_refuses_its_weights()
    {
        string run = Path.Combine(dir, "student");
        var info = new TrainingRunInfo { Name = "student", Config = Tiny, Options = Fast, Distillation = Settings() };
        var outcome = TrainingRun.Execute(info, run, images: null, resume: false, initial: null, CancellationToken.None);
        Assert.True(outcome.Finished);

        using (var student = LoadedModel.Load(run))
        {
            Assert.True(student.Config.GuidanceConditioned);
            Assert.Equal("teacher", student.Manifest.DistilledFrom);
            var defaults = Assert.IsType<SamplingOptions>(student.Defaults);
            Assert.Equal((SamplerKind.DpmPP2M, 2, 1), (defaults.Sampler, defaults.Steps, defaults.EffectiveOrder));
            Assert.Contains(student.Model.state_dict().Keys, k => k == "w_embedder.mlp.0.weight");
            // One model call per step and image: a 2-step image is two rows through the blocks, with guidance.
            long rows = student.Model.BlockRowsForwarded;
            ImagePipeline.Generate(student, [1], defaults with { Seed = 4 });
            Assert.Equal(2, student.Model.BlockRowsForwarded - rows);
        }

        string manifest = Path.Combine(run, ModelExport.ManifestFile);
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"guidance_conditioned\": true", "\"guidance_conditioned\": false"));
        var refused = Assert.Throws<InvalidDataException>(() => LoadedModel.Load(run));
        Assert.Contains("w_embedder.mlp.0.weight", refused.Message);
    }

    [Fact]
    public void A_stopped_distillation_resumes_to_the_weights_of_an_uninterrupted_one()
    {
        var settings = Settings(studentSteps: 4);
        string straight = Path.Combine(dir, "straight"), stopped = Path.Combine(dir, "stopped");
        var info = new TrainingRunInfo { Name = "s", Config = Tiny, Options = Fast, Distillation = settings };
        Assert.True(TrainingRun.Execute(info, straight, null, resume: false, initial: null, CancellationToken.None).Finished);

        var half = info with { Options = Fast with { Steps = 3 } };
        Assert.True(TrainingRun.Execute(half, stopped, null, resume: false, initial: null, CancellationToken.None).Finished);
        // The trajectories are not made again: the resumed run reads the chunk the first session wrote.
        var chunk = Directory.GetFiles(Path.Combine(stopped, TeacherTrajectories.FolderName), "chunk-*.safetensors").Single();
        var written = File.GetLastWriteTimeUtc(chunk);
        Assert.True(TrainingRun.Execute(info, stopped, null, resume: true, initial: null, CancellationToken.None).Finished);
        Assert.Equal(written, File.GetLastWriteTimeUtc(chunk));

        Assert.Equal(File.ReadAllBytes(Path.Combine(straight, ModelExport.WeightsFile)), File.ReadAllBytes(Path.Combine(stopped, ModelExport.WeightsFile)));
    }

    [Fact]
    public void A_bank_made_for_other_settings_is_refused()
    {
        using var teacher = LoadedModel.Load(Teacher());
        using (TeacherTrajectories.LoadOrMake(dir, teacher, Settings(), seed: 1, CancellationToken.None)) { }
        var e = Assert.Throws<InvalidDataException>(() => TeacherTrajectories.LoadOrMake(dir, teacher, Settings() with { MaxGuidance = 5 }, seed: 1,
            CancellationToken.None));
        Assert.Contains("other settings", e.Message);
    }

    [Theory]
    [InlineData(3, 12, 8, "student_steps")]
    [InlineData(4, 6, 8, "teacher_steps")]
    [InlineData(2, 2, 0, "trajectories")]
    public void Bad_settings_name_their_field(int student, int teacher, int trajectories, string field)
    {
        var settings = new DistillationSettings { Teacher = "t", StudentSteps = student, TeacherSteps = teacher, Trajectories = trajectories };
        Assert.Equal(field, Assert.ThrowsAny<ArgumentException>(settings.Validate).ParamName);
        var range = new DistillationSettings { Teacher = "t", MinGuidance = 5, MaxGuidance = 2 };
        Assert.Equal("guidance_range", Assert.ThrowsAny<ArgumentException>(range.Validate).ParamName);
    }
}
