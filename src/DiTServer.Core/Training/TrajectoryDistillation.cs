using DiTServer.Core.Model;
using DiTServer.Core.Sampling.Solvers;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>The distillation objective: one DDIM step of the guidance-conditioned student from the teacher's state at
/// its grid time t_k must land on the teacher's state at t_{k+1}, which the guided teacher reached in N/K UniPC steps
/// (trajectory distillation; the target of one student step is two teacher steps' result in progressive distillation,
/// Salimans &amp; Ho 2022, Algorithm 2, and the teacher's whole guided solve here, with w an input as in Meng et al. 2023).</summary>
public static class TrajectoryDistillation
{
    /// <summary>Per-sample loss (B): ‖(x_s − x_s*) / α_s‖² averaged over pixels, the landing error in data units.</summary>
    /// <remarks>Dividing by α_s weighs an early step's error by how much the rest of the solve magnifies it (the flow from
    /// t to 0 scales data directions by about 1/α): a first step from pure noise has to be about 17× more exact than the
    /// last one, which is what decides the image. The student step is DPM-Solver++(1) = DDIM in data prediction:
    /// x_s = (σ_s/σ_t)·x_t + (α_s − σ_s·α_t/σ_t)·x̂₀ with x̂₀ = (x_t − σ_t·ε̂)/α_t (Lu et al. 2022, Eq. (5) at order 1).</remarks>
    /// <param name="trajectories">(B) int64 rows of the bank.</param>
    /// <param name="steps">(B) int64 student steps 0..K−1.</param>
    public static Tensor Losses(DiT student, TeacherTrajectories bank, int studentSteps, Tensor trajectories, Tensor steps)
    {
        var schedule = DiscreteVpSchedule.Linear1000;
        var grid = SolverTimesteps.Create(schedule, StepSpacing.TimeUniform, studentSteps);  // K + 1 times, what the sampler uses
        int perStep = (bank.Times.Length - 1) / studentSteps;                                // teacher steps per student step
        long states = bank.States.shape[1];
        var device = student.parameters().First().device;
        var k = steps.data<long>().ToArray();

        var flat = bank.States.view(-1, bank.States.shape[2], bank.States.shape[3], bank.States.shape[4]);  // (D·(N+1), C, H, W)
        var from = trajectories * states + steps * perStep;
        var xt = flat.index_select(0, from).to(device);                                         // (B, C, H, W) teacher at t_k
        var xsTeacher = flat.index_select(0, from + perStep).to(device);                        // (B, C, H, W) teacher at t_{k+1}
        var y = bank.Labels.index_select(0, trajectories).to(device);                           // (B)
        var w = bank.Guidance.index_select(0, trajectories).to(device);                         // (B)

        Tensor Column(Func<int, float> f) => tensor(k.Select(i => f((int)i)).ToArray(), device: device).view(-1, 1, 1, 1); // (B, 1, 1, 1)
        var alphaT = Column(i => schedule.Alpha(grid[i]));
        var sigmaT = Column(i => schedule.Sigma(grid[i]));
        var alphaS = Column(i => schedule.Alpha(grid[i + 1]));
        var sigmaS = Column(i => schedule.Sigma(grid[i + 1]));
        var modelTime = tensor(k.Select(i => schedule.ModelInputTime(grid[i])).ToArray(), device: device);  // (B)

        var eps = student.forward(xt, modelTime, y, w)[.., ..(int)xt.shape[1]];                 // (B, C, H, W) the ε channels
        var x0 = (xt - sigmaT * eps) / alphaT;                                                  // (B, C, H, W) x̂₀
        var xs = sigmaS / sigmaT * xt + (alphaS - sigmaS * alphaT / sigmaT) * x0;               // (B, C, H, W) the student's landing
        return ((xs - xsTeacher) / alphaS).square().mean(new long[] { 1, 2, 3 });               // (B)
    }

    /// <summary>The weights a student starts from: the teacher's, key for key, and the student's own freshly initialised
    /// guidance embedder (its output layer is zero, so the student starts as the teacher's conditional model).</summary>
    public static Dictionary<string, Tensor> StudentStart(DiT teacher, DiT student)
    {
        var start = teacher.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value);
        foreach (var (key, value) in student.state_dict())
            if (key.StartsWith("w_embedder.", StringComparison.Ordinal)) start[key] = value;
        return start;
    }
}
