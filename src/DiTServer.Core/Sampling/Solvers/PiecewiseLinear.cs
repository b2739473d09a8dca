namespace DiTServer.Core.Sampling.Solvers;

/// <summary>A piecewise-linear function through keypoints, extended linearly past both ends: the authors'
/// <c>interpolate_fn</c> (dpm_solver_pytorch.py, uni_pc.py), evaluated in float32 like their tensors.</summary>
public static class PiecewiseLinear
{
    /// <param name="x">Where to evaluate.</param>
    /// <param name="xp">Keypoints' x, strictly increasing, at least two.</param>
    /// <param name="yp">Keypoints' y.</param>
    public static float Evaluate(float x, IReadOnlyList<float> xp, IReadOnlyList<float> yp)
    {
        int k = xp.Count;
        // interpolate_fn sorts [x, xp...] stably and takes x's position: the number of keypoints below x. A tie puts
        // x before the equal keypoint, so the segment ends at it (both sides give that keypoint's value up to rounding).
        int lo = 0, hi = k;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (xp[mid] < x) lo = mid + 1; else hi = mid;
        }
        int start = lo == 0 ? 0 : lo == k ? k - 2 : lo - 1;   // below the first or above the last: the outermost segment
        float sx = xp[start], ex = xp[start + 1], sy = yp[start], ey = yp[start + 1];
        return sy + (x - sx) * (ey - sy) / (ex - sx);
    }
}
