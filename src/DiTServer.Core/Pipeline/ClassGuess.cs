using DiTServer.Core.Diffusion;
using DiTServer.Core.Sampling;
using static TorchSharp.torch;

namespace DiTServer.Core.Pipeline;

/// <summary>Which class the served model finds most likely for a picture: a diffusion classifier (Li et al. 2023, "Your
/// Diffusion Model is Secretly a Zero-Shot Classifier", Algorithm 1). The picture is noised at fixed timesteps with fixed
/// noise, and the class whose conditional ε-prediction misses that noise least wins.</summary>
/// <remarks>Every class sees the same (t, ε) pairs, so the comparison is paired and a few pairs suffice. The paper
/// shows mid-range timesteps carry most of the signal. Cost is bounded for models with many classes by the paper's
/// adaptive scheme (Section 3.2): every class is first scored at <see cref="ClassGuessOptions.ScreenTimesteps"/>, then
/// only the <see cref="ClassGuessOptions.Finalists"/> best at all of <see cref="ClassGuessOptions.Timesteps"/>. The
/// forwards run in chunks of at most <see cref="ClassGuessOptions.MaxRows"/> rows.</remarks>
public static class ClassGuess
{
    /// <summary>The class index the model finds most likely for a picture (an init image at the model's size).</summary>
    public static int Guess(LoadedModel model, ImageEdit picture, ClassGuessOptions? options = null) => Rank(model, picture, options)[0];

    /// <summary>The classes in the order the classifier ranks them, most likely first: the finalists by their error over
    /// all timesteps, then the rest by their screening error.</summary>
    /// <exception cref="ArgumentException">The picture is not of the model's size and channels.</exception>
    public static IReadOnlyList<int> Rank(LoadedModel model, ImageEdit picture, ClassGuessOptions? options = null)
    {
        options ??= ClassGuessOptions.Default;
        options.Validate();
        int classes = model.Config.NumClasses;
        using var start = EditEncoder.Encode(model, picture); // the picture as the DiT sees it, as an edit starts from it
        if (classes == 1) return [0];

        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var x0 = start.X0;                                                              // (1, C, h, w)
        var diffusion = GaussianDiffusion.Create("", learnSigma: model.Config.LearnSigma);
        var all = Enumerable.Range(0, classes).ToArray();
        if (classes <= options.Finalists) return Order(all, Errors(model, diffusion, x0, all, options.Timesteps, options));

        var screened = Order(all, Errors(model, diffusion, x0, all, options.ScreenTimesteps, options));
        var finalists = screened.Take(options.Finalists).ToArray();
        var final = Order(finalists, Errors(model, diffusion, x0, finalists, options.Timesteps, options));
        return final.Concat(screened.Skip(options.Finalists)).ToArray();
    }

    /// <summary>Mean squared error ‖ε − ε_θ(x_t, t, c)‖² summed over <paramref name="timesteps"/> for each class of
    /// <paramref name="candidates"/>, in that order. Rows are (timestep, class) pairs, batched across both.</summary>
    private static double[] Errors(LoadedModel model, GaussianDiffusion diffusion, Tensor x0, int[] candidates,
        IReadOnlyList<int> timesteps, ClassGuessOptions options)
    {
        using var scope = NewDisposeScope();
        var device = x0.device;
        int channels = (int)x0.shape[1];
        // One fixed draw per timestep, shared by every class (the paper's paired comparison), on a CPU generator so a
        // seed gives the same guess on every device.
        using var generator = new Generator((ulong)options.Seed);
        var noise = randn([timesteps.Count, .. x0.shape[1..]], generator: generator).to(device);           // (T, C, h, w)
        var ts = tensor(timesteps.Select(t => (long)t).ToArray(), device: device);                         // (T)
        var xt = diffusion.QSample(x0.expand(timesteps.Count, -1, -1, -1), ts, noise);                     // (T, C, h, w)
        var pairs = (from t in Enumerable.Range(0, timesteps.Count) from c in Enumerable.Range(0, candidates.Length) select (t, c)).ToArray();
        var sums = new double[candidates.Length];
        for (int start = 0; start < pairs.Length; start += options.MaxRows)
        {
            using var chunk = NewDisposeScope();
            var rows = pairs.AsSpan(start, Math.Min(options.MaxRows, pairs.Length - start)).ToArray();
            var at = tensor(rows.Select(r => (long)r.t).ToArray(), device: device);                        // (n)
            var y = tensor(rows.Select(r => (long)candidates[r.c]).ToArray(), device: device);              // (n)
            // A distilled student takes the guidance scale as an input: w = 1 is its conditional ε, what the classifier compares.
            var w = model.Config.GuidanceConditioned ? ones(rows.Length, device: device) : null;             // (n) or none
            var eps = model.Model.forward(xt.index_select(0, at), ts.index_select(0, at), y, w)[.., ..channels]; // (n, C, h, w)
            var error = (eps.to_type(float32) - noise.index_select(0, at)).square().mean([1, 2, 3]);      // (n)
            var values = error.cpu().data<float>().ToArray();
            for (int i = 0; i < rows.Length; i++) sums[rows[i].c] += values[i];
        }
        return sums;
    }

    /// <summary>Lowest error first; a tie keeps the lower class index.</summary>
    private static int[] Order(int[] candidates, double[] errors) =>
        candidates.Select((c, i) => (Class: c, Error: errors[i])).OrderBy(e => e.Error).ThenBy(e => e.Class).Select(e => e.Class).ToArray();
}
