using System.Text.Json;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Pipeline;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>The guided teacher's deterministic ODE trajectories a student is distilled from: for each trajectory its
/// class, guidance scale and the state after every UniPC step, from the initial noise to the sample.</summary>
/// <remarks>Made in chunks of <see cref="ChunkSize"/> trajectories, each saved under <c>run/trajectories/</c> as soon as it
/// is complete, so an interrupted run (SIGTERM, a crash) keeps the chunks it made and a resumed one makes only the rest.
/// Chunk c draws everything (labels, scales, seeds) from a generator seeded with (seed, c): the bank is the same whether
/// it was made in one session or several.</remarks>
public sealed class TeacherTrajectories : IDisposable
{
    public const string FolderName = "trajectories", SettingsFile = "settings.json";
    /// <summary>Trajectories per chunk file; also the rows of one teacher forward (twice that with the unconditional copies).</summary>
    public const int ChunkSize = 128;
    /// <summary>Rows per sampling run inside a chunk: each run has its own seed and guidance scale.</summary>
    private const int RowsPerRun = 16;

    /// <summary>(D, N + 1, C, H, W) float32 on the CPU: state k is the teacher's x after k of its N steps (0 = the noise).</summary>
    public Tensor States { get; }
    /// <summary>(D) int64 class labels.</summary>
    public Tensor Labels { get; }
    /// <summary>(D) float32 guidance scales.</summary>
    public Tensor Guidance { get; }
    /// <summary>The N + 1 solver times of the states (time-uniform, from 1 down to 1/1000).</summary>
    public float[] Times { get; }

    public int Count => (int)States.shape[0];

    /// <summary>Memory the bank holds for <paramref name="settings"/> (float32 states; the admin API's bound counts it).</summary>
    public static double Bytes(DiTConfig config, DistillationSettings settings) =>
        (double)settings.Trajectories * (settings.TeacherSteps + 1) * config.InChannels * config.InputSize * config.InputSize * sizeof(float);

    private TeacherTrajectories(Tensor states, Tensor labels, Tensor guidance, float[] times)
    {
        States = states;
        Labels = labels;
        Guidance = guidance;
        Times = times;
    }

    /// <summary>A bank of given trajectories (N + 1 time-uniform states each); the bank takes ownership of the tensors.</summary>
    /// <param name="states">(D, N + 1, C, H, W) float32 on the CPU.</param>
    public static TeacherTrajectories Of(Tensor states, Tensor labels, Tensor guidance) =>
        new(states, labels, guidance, SolverTimesteps.Create(DiscreteVpSchedule.Linear1000, StepSpacing.TimeUniform, (int)states.shape[1] - 1));

    /// <summary>What a chunk file's settings must match: a bank made for another teacher or other settings is refused.</summary>
    private sealed record BankSettings(string Teacher, int TeacherSteps, double MinGuidance, double MaxGuidance, long Seed, int ChunkSize);

    /// <summary>Loads the chunks already in <paramref name="runFolder"/>/trajectories and makes the missing ones with the teacher.</summary>
    /// <exception cref="OperationCanceledException">Cancelled; the chunks finished so far stay on disk.</exception>
    public static TeacherTrajectories LoadOrMake(string runFolder, LoadedModel teacher, DistillationSettings settings, long seed,
        CancellationToken cancel, Action<string>? log = null)
    {
        string folder = Path.Combine(runFolder, FolderName);
        Directory.CreateDirectory(folder);
        var wanted = new BankSettings(settings.Teacher, settings.TeacherSteps, settings.MinGuidance, settings.MaxGuidance, seed, ChunkSize);
        string settingsPath = Path.Combine(folder, SettingsFile);
        if (File.Exists(settingsPath))
        {
            var found = JsonSerializer.Deserialize<BankSettings>(File.ReadAllText(settingsPath));
            if (found != wanted)
                throw new InvalidDataException($"{folder} holds trajectories of other settings ({found}); remove the folder or use another run folder");
        }
        else AtomicFile.WriteVia(settingsPath, tmp => File.WriteAllText(tmp, JsonSerializer.Serialize(wanted)));

        int chunks = (settings.Trajectories + ChunkSize - 1) / ChunkSize;
        var states = new List<Tensor>();
        var labels = new List<Tensor>();
        var guidance = new List<Tensor>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int made = 0;
        try
        {
            for (int c = 0; c < chunks; c++)
            {
                int rows = Math.Min(ChunkSize, settings.Trajectories - c * ChunkSize);
                string path = Path.Combine(folder, $"chunk-{c:D4}.safetensors");
                Dictionary<string, Tensor> chunk;
                if (File.Exists(path)) chunk = CheckpointFile.LoadStateDict(path);
                else
                {
                    chunk = MakeChunk(teacher, settings, seed, c, rows, cancel);
                    AtomicFile.WriteVia(path, tmp => CheckpointFile.SaveSafetensors(tmp, chunk));
                    made++;
                    log?.Invoke($"teacher trajectories: chunk {c + 1}/{chunks} made ({clock.Elapsed.TotalSeconds:F0} s)");
                }
                if (chunk["states"].shape[0] != rows || chunk["states"].shape[1] != settings.TeacherSteps + 1)
                    throw new InvalidDataException($"{path} holds {chunk["states"].shape[0]} trajectories of {chunk["states"].shape[1]} states; " +
                        $"expected {rows} of {settings.TeacherSteps + 1}");
                states.Add(chunk["states"]);
                labels.Add(chunk["labels"]);
                guidance.Add(chunk["guidance"]);
            }
            if (made > 0) log?.Invoke($"teacher trajectories: {made} chunk(s) made in {clock.Elapsed.TotalSeconds:F0} s, {chunks - made} loaded");
            return Of(cat(states, 0), cat(labels, 0), cat(guidance, 0));
        }
        finally
        {
            foreach (var t in states.Concat(labels).Concat(guidance)) t.Dispose();
        }
    }

    /// <summary>One chunk: <paramref name="rows"/> trajectories of the guided teacher (UniPC, time-uniform, the server's
    /// default order and variant) in runs of <see cref="RowsPerRun"/> that share each forward.</summary>
    private static Dictionary<string, Tensor> MakeChunk(LoadedModel teacher, DistillationSettings settings, long seed, int chunk, int rows,
        CancellationToken cancel)
    {
        using var generator = new Generator((ulong)seed * 1_000_003UL + (ulong)chunk);
        using var _ = no_grad(); // not inference_mode: the states become training inputs, which autograd saves for backward
        var config = teacher.Config;
        var runs = new List<SamplingRun>();
        var captured = new List<Tensor[]>();
        try
        {
            for (int start = 0; start < rows; start += RowsPerRun)
            {
                int n = Math.Min(RowsPerRun, rows - start);
                using var labelDraw = randint(0, config.NumClasses, new long[] { n }, dtype: int64, generator: generator);
                using var scaleDraw = rand(1, generator: generator);
                using var seedDraw = randint(0, 1L << 53, new long[] { 1 }, dtype: int64, generator: generator);
                double w = settings.MinGuidance + (settings.MaxGuidance - settings.MinGuidance) * scaleDraw.item<float>();
                var options = new SamplingOptions
                {
                    Sampler = SamplerKind.UniPc, Steps = settings.TeacherSteps, Spacing = StepSpacing.TimeUniform, CfgScale = w,
                    Seed = seedDraw.item<long>(),
                };
                var run = new SamplingRun(null, config, labelDraw.data<long>().ToArray(), options, teacher.Device);
                var steps = new Tensor[settings.TeacherSteps + 1];
                steps[0] = run.X.cpu().clone().DetachFromDisposeScope();
                run.OnStepFinished = (k, x) => steps[k] = x.cpu().clone().DetachFromDisposeScope();
                runs.Add(run);
                captured.Add(steps);
            }
            while (!runs[0].Done)
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var (output, _) = BatchForward.Run(teacher.Model, runs, GuidanceMode.Official); // (Σ rows, C_out, H, W)
                int offset = 0;
                foreach (var run in runs)
                {
                    run.Advance(output[offset..(offset + run.Rows)]);
                    offset += run.Rows;
                }
            }
            return new Dictionary<string, Tensor>
            {
                ["states"] = cat(captured.Select(s => stack(s, 1)).ToArray(), 0),                                  // (rows, N + 1, C, H, W)
                ["labels"] = tensor(runs.SelectMany(r => r.Labels).ToArray()),                                      // (rows)
                ["guidance"] = tensor(runs.SelectMany(r => Enumerable.Repeat((float)r.Options.CfgScale, r.Rows)).ToArray()), // (rows)
            };
        }
        finally
        {
            foreach (var run in runs) run.Dispose();
            foreach (var t in captured.SelectMany(s => s)) t?.Dispose();
        }
    }

    public void Dispose()
    {
        States.Dispose();
        Labels.Dispose();
        Guidance.Dispose();
    }
}
