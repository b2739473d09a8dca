namespace DiTServer.Core.Training;

/// <summary>Hyper-parameters of one training run; the defaults are the DiT paper's recipe (Section 4 / train.py).</summary>
public sealed record TrainingOptions
{
    /// <summary>Images per step (train.py's global batch size).</summary>
    public int BatchSize { get; init; } = 256;
    /// <summary>Total optimizer steps of the run (a resumed run continues up to this number).</summary>
    public long Steps { get; init; } = 1000;
    /// <summary>AdamW learning rate (paper: 1e-4, constant, no warm-up).</summary>
    public double LearningRate { get; init; } = 1e-4;
    /// <summary>AdamW weight decay (paper: 0).</summary>
    public double WeightDecay { get; init; }
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    /// <summary>EMA decay of the served weights (paper: 0.9999).</summary>
    public double EmaDecay { get; init; } = 0.9999;
    /// <summary>Use decay min(EmaDecay, (1+n)/(10+n)) after n updates, so a short run's EMA is not dominated by the random init.</summary>
    public bool EmaWarmup { get; init; }
    /// <summary>Seed of the run's one generator (batches, timesteps, noise, label dropout).</summary>
    public long Seed { get; init; }
    /// <summary>Steps between log lines / loss-curve rows.</summary>
    public int LogEvery { get; init; } = 100;
    /// <summary>Steps between checkpoints (0 = only at the end or on interrupt).</summary>
    public int CheckpointEvery { get; init; } = 1000;

    /// <summary>Throws with the option's name when a value cannot train.</summary>
    public void Validate()
    {
        Require(BatchSize > 0, "batch size must be positive");
        Require(Steps > 0, "steps must be positive");
        Require(LearningRate > 0, "learning rate must be positive");
        Require(WeightDecay >= 0, "weight decay must be non-negative");
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, "betas must be in [0, 1)");
        Require(EmaDecay is >= 0 and <= 1, "EMA decay must be in [0, 1]");
        Require(LogEvery > 0, "log interval must be positive");
        Require(CheckpointEvery >= 0, "checkpoint interval must be non-negative");
    }

    private static void Require(bool ok, string message)
    {
        if (!ok) throw new ArgumentException(message);
    }
}
