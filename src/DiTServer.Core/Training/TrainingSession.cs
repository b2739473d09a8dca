using System.Diagnostics;
using System.Globalization;

namespace DiTServer.Core.Training;

/// <summary>Progress of a running session, reported after every step.</summary>
/// <param name="RecentLoss">Mean loss over the last log interval (or the steps so far in it).</param>
/// <param name="StepsPerSecond">Steps per second in this session.</param>
public readonly record struct TrainingProgress(long Step, long TotalSteps, double RecentLoss, double StepsPerSecond, TimeSpan Eta, string? LastCheckpoint);

/// <summary>Runs a trainer to its step count with periodic checkpoints, a loss-curve CSV, and a checkpoint on cancel;
/// the loop the CLI (and any host) drives. Output folder: <c>checkpoint.ckpt</c>, <c>loss.csv</c>, then the export.</summary>
public sealed class TrainingSession
{
    public const string CheckpointFile = "checkpoint.ckpt", LossFile = "loss.csv", LossPlotFile = "loss.svg";

    private readonly Trainer trainer;
    private readonly TrainingRunInfo info;
    private readonly string outDir;

    public string CheckpointPath => Path.Combine(outDir, CheckpointFile);
    public string LossPath => Path.Combine(outDir, LossFile);

    public TrainingSession(Trainer trainer, TrainingRunInfo info, string outDir)
    {
        this.trainer = trainer;
        this.info = info;
        this.outDir = Path.GetFullPath(outDir);
        Directory.CreateDirectory(this.outDir);
    }

    /// <summary>Trains until <see cref="TrainingOptions.Steps"/> or cancellation; either way the state is checkpointed.</summary>
    /// <returns>True when the run reached its step count.</returns>
    public bool Run(CancellationToken cancel, Action<TrainingProgress>? progress = null)
    {
        var options = trainer.Options;
        TrimLossCurve(trainer.Step);
        using var csv = new StreamWriter(LossPath, append: true);
        if (csv.BaseStream.Length == 0) csv.WriteLine("step,loss,mse,vb,elapsed_s");

        var clock = Stopwatch.StartNew();
        long startStep = trainer.Step;
        double sumLoss = 0, sumMse = 0, sumVb = 0;
        int inInterval = 0;
        string? lastCheckpoint = null;
        while (trainer.Step < options.Steps && !cancel.IsCancellationRequested)
        {
            var s = trainer.TrainStep();
            if (!double.IsFinite(s.Loss))
                throw new InvalidOperationException($"loss is {s.Loss} at step {s.Step}; the last good checkpoint is {lastCheckpoint ?? "(none)"}");
            sumLoss += s.Loss; sumMse += s.Mse; sumVb += s.Vb; inInterval++;
            double elapsed = info.ElapsedSeconds + clock.Elapsed.TotalSeconds;
            if (s.Step % options.LogEvery == 0)
            {
                csv.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{s.Step},{sumLoss / inInterval:G6},{sumMse / inInterval:G6},{sumVb / inInterval:G6},{elapsed:F1}"));
                csv.Flush();
            }
            double recent = sumLoss / inInterval;
            if (s.Step % options.LogEvery == 0) { sumLoss = sumMse = sumVb = 0; inInterval = 0; }
            if (options.CheckpointEvery > 0 && s.Step % options.CheckpointEvery == 0 && s.Step < options.Steps)
                lastCheckpoint = Save(clock.Elapsed);
            double rate = (trainer.Step - startStep) / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            progress?.Invoke(new TrainingProgress(s.Step, options.Steps, recent, rate,
                TimeSpan.FromSeconds((options.Steps - s.Step) / Math.Max(rate, 1e-9)), lastCheckpoint));
        }
        Save(clock.Elapsed);
        csv.Flush();
        var rows = LossCurve.Read(LossPath);
        if (rows.Count > 0)
            File.WriteAllText(Path.Combine(outDir, LossPlotFile),
                LossCurve.Svg(rows, $"{info.Name ?? "DiT"}: training loss (mean per {options.LogEvery} steps)"));
        return trainer.Step >= options.Steps;
    }

    /// <summary>Total training seconds of the run so far, including earlier sessions.</summary>
    public double ElapsedSeconds(TimeSpan thisSession) => info.ElapsedSeconds + thisSession.TotalSeconds;

    private string Save(TimeSpan elapsed)
    {
        TrainingCheckpoint.Save(CheckpointPath, trainer, info with { ElapsedSeconds = ElapsedSeconds(elapsed) });
        return CheckpointPath;
    }

    /// <summary>Drops loss rows past the checkpoint's step, so a resumed run's curve has no duplicated steps.</summary>
    private void TrimLossCurve(long step)
    {
        if (!File.Exists(LossPath)) return;
        var lines = File.ReadAllLines(LossPath);
        var keep = lines.Where((l, i) => i == 0 || (long.TryParse(l.Split(',')[0], CultureInfo.InvariantCulture, out var s) && s <= step)).ToArray();
        if (keep.Length != lines.Length) File.WriteAllLines(LossPath, keep);
    }
}
