namespace DiTServer.Core.Pipeline;

/// <summary>How hard <see cref="ClassGuess"/> looks: which timesteps (of the 1000-step training schedule), how many
/// classes reach the final round, how many rows one forward takes, and the seed of the fixed noise.</summary>
public sealed record ClassGuessOptions
{
    /// <summary>Ten timesteps, one in the middle of each tenth of the schedule (the paper samples t uniformly).</summary>
    public IReadOnlyList<int> Timesteps { get; init; } = [50, 150, 250, 350, 450, 550, 650, 750, 850, 950];

    /// <summary>The screening round, for models with more classes than <see cref="Finalists"/>: one mid-range timestep,
    /// so a 1000-class model costs 1000 rows here plus <see cref="Finalists"/> × <see cref="Timesteps"/> rows after.</summary>
    public IReadOnlyList<int> ScreenTimesteps { get; init; } = [450];

    /// <summary>Classes scored at every timestep; a model with at most this many classes skips the screening.</summary>
    public int Finalists { get; init; } = 10;

    /// <summary>Rows of one forward pass.</summary>
    public int MaxRows { get; init; } = 100;

    /// <summary>Seed of the fixed noise: the same picture always gets the same guess.</summary>
    public long Seed { get; init; }

    public static ClassGuessOptions Default { get; } = new();

    /// <summary>Rows of forward passes a guess costs for a model with <paramref name="classes"/> classes.</summary>
    public long Rows(int classes) => classes <= 1 ? 0
        : classes <= Finalists ? (long)classes * Timesteps.Count
        : (long)classes * ScreenTimesteps.Count + (long)Finalists * Timesteps.Count;

    /// <exception cref="ArgumentException">A timestep outside 0..999, no timesteps, or a count below 1.</exception>
    public void Validate()
    {
        if (Timesteps.Count == 0 || ScreenTimesteps.Count == 0) throw new ArgumentException("class guess needs at least one timestep per round");
        if (Timesteps.Concat(ScreenTimesteps).Any(t => t is < 0 or > 999)) throw new ArgumentException("class guess timesteps must be in 0..999");
        if (Finalists < 1 || MaxRows < 1) throw new ArgumentException("class guess finalists and rows must be at least 1");
    }
}
