using DiTServer.Core.Diffusion;
using DiTServer.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>Loss terms of one optimizer step, averaged over the batch.</summary>
public readonly record struct StepLoss(long Step, double Loss, double Mse, double Vb);

/// <summary>The DiT training loop of train.py: AdamW on the official diffusion loss, EMA of the weights.</summary>
/// <remarks>All randomness (batch indices, flips, latent posterior draws, timesteps, noise, label dropout) comes from one seeded generator whose
/// state goes into the checkpoint, so a resumed run takes exactly the steps the uninterrupted one would.</remarks>
public sealed class Trainer : IDisposable
{
    public DiTConfig Config { get; }
    public TrainingOptions Options { get; }
    public DiT Model { get; }
    public Ema Ema { get; }
    public TorchSharp.Modules.OptimizerHelper Optimizer { get; }
    public GaussianDiffusion Diffusion { get; }
    public Generator Generator { get; }
    public Device Device { get; }
    /// <summary>Optimizer steps taken so far (also the number of EMA updates).</summary>
    public long Step { get; internal set; }

    private readonly ITrainingDataset? data;
    private readonly TeacherTrajectories? bank;
    private readonly int studentSteps;

    /// <summary>Images (or latents) the trainer draws its batches from; for a distillation, the teacher's trajectories.</summary>
    public long DatasetCount => data?.Count ?? bank!.Count;

    public Trainer(DiTConfig config, TrainingOptions options, ITrainingDataset data, Device? device = null)
        : this(config, options, data, null, 0, device)
    {
    }

    /// <summary>A distillation: the guidance-conditioned student learns to land on the teacher's trajectories in
    /// <paramref name="studentSteps"/> steps (<see cref="TrajectoryDistillation"/>); no dataset.</summary>
    public Trainer(DiTConfig config, TrainingOptions options, TeacherTrajectories bank, int studentSteps, Device? device = null)
        : this(config, options, null, bank, studentSteps, device)
    {
    }

    private Trainer(DiTConfig config, TrainingOptions options, ITrainingDataset? data, TeacherTrajectories? bank, int studentSteps, Device? device)
    {
        config.Validate();
        options.Validate();
        if (bank is not null)
        {
            if (!config.GuidanceConditioned) throw new ArgumentException("a distilled student must be guidance-conditioned");
            if (bank.Count == 0) throw new ArgumentException("no teacher trajectories");
            if (bank.States.shape[2] != config.InChannels || bank.States.shape[3] != config.InputSize)
                throw new ArgumentException("the teacher's trajectories do not have the student's image shape");
        }
        else if (data is null) throw new ArgumentNullException(nameof(data));
        else if (data.ImageSize != config.InputSize || data.Channels != config.InChannels)
            throw new ArgumentException(
                $"dataset images are {data.Channels}×{data.ImageSize}×{data.ImageSize} but the model expects " +
                    $"{config.InChannels}×{config.InputSize}×{config.InputSize}");
        else if (data.NumClasses > config.NumClasses)
            throw new ArgumentException($"dataset has {data.NumClasses} classes but the model only {config.NumClasses}");
        else if (data.Count == 0) throw new ArgumentException("dataset is empty");

        Config = config;
        Options = options;
        Device = device ?? CPU;
        this.data = data;
        this.bank = bank;
        this.studentSteps = studentSteps;
        // The initial weights follow the seed (train.py seeds the global RNG for this); an own generator keeps
        // other threads' use of the global one (tests in parallel, a server) from changing them.
        using (var initGenerator = new Generator((ulong)options.Seed))
            Model = new DiT(config, initGenerator);
        Model.to(Device);
        Ema = new Ema(Model);
        Optimizer = optim.AdamW(Model.parameters().Where(p => p.requires_grad), options.LearningRate,
            options.Beta1, options.Beta2, weight_decay: options.WeightDecay);
        Diffusion = GaussianDiffusion.Create("", learnSigma: config.LearnSigma);
        Generator = new Generator((ulong)options.Seed);
        Model.LabelEmbedder.DropoutGenerator = Generator;
        Model.train();
    }

    /// <summary>One optimizer step on a random batch: uniform t in [0, T), ε ~ N(0, I), loss = mean(mse + vb).</summary>
    public StepLoss TrainStep()
    {
        if (bank is not null) return DistillStep(bank);
        using var scope = NewDisposeScope();
        Model.train();
        var idx = randint(0, data!.Count, new long[] { Options.BatchSize }, dtype: ScalarType.Int64, generator: Generator);
        var (x, y) = data.Draw(idx, Generator);                                           // (B, C, S, S), (B,)
        var t = randint(0, Diffusion.NumTimesteps, new long[] { Options.BatchSize }, dtype: ScalarType.Int64, generator: Generator);
        var noise = randn(x.shape, generator: Generator);
        x = x.to(Device); y = y.to(Device); t = t.to(Device); noise = noise.to(Device);

        var terms = Losses(x, y, t, noise);
        var loss = terms.Loss.mean();
        Optimizer.zero_grad();
        loss.backward();
        Optimizer.step();
        Ema.Update(Model, Ema.DecayAt(Options.EmaDecay, Options.EmaWarmup, Step));
        Step++;
        return new StepLoss(Step, loss.item<float>(), terms.Mse.mean().item<float>(), terms.Vb is null ? 0 : terms.Vb.mean().item<float>());
    }

    /// <summary>One optimizer step of a distillation: random trajectories, a random student step of each, the landing loss.</summary>
    private StepLoss DistillStep(TeacherTrajectories trajectories)
    {
        using var scope = NewDisposeScope();
        // Label dropout would swap the class the teacher was guided with for the null class; the student learns the guided
        // map for the class it is given, so it steps in eval mode (dropout of labels is a DiT's only train-only layer).
        Model.eval();
        var rows = randint(0, trajectories.Count, new long[] { Options.BatchSize }, dtype: ScalarType.Int64, generator: Generator);
        var steps = randint(0, studentSteps, new long[] { Options.BatchSize }, dtype: ScalarType.Int64, generator: Generator);
        var loss = TrajectoryDistillation.Losses(Model, trajectories, studentSteps, rows, steps).mean();
        Optimizer.zero_grad();
        loss.backward();
        Optimizer.step();
        Ema.Update(Model, Ema.DecayAt(Options.EmaDecay, Options.EmaWarmup, Step));
        Step++;
        double value = loss.item<float>();
        return new StepLoss(Step, value, value, 0);
    }

    /// <summary>Per-sample loss terms of the training model for given inputs (train.py's <c>training_losses</c> call).</summary>
    public LossTerms Losses(Tensor xStart, Tensor y, Tensor t, Tensor noise) =>
        Diffusion.TrainingLosses((xt, tm) => Model.forward(xt, tm, y), xStart, t, noise);

    public void Dispose()
    {
        Optimizer.Dispose();
        Ema.Dispose();
        Model.Dispose();
        Generator.Dispose();
    }
}
