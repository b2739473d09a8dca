namespace DiTServer.Core.Diffusion;

/// <summary>Which of the original diffusion steps a shorter sampler visits (guided-diffusion <c>respace.py</c>).</summary>
public static class Respacing
{
    /// <summary>The official <c>space_timesteps</c>: "250", "10,15,20" (per equal section) or "ddimN" (even stride).</summary>
    /// <remarks>Rounds with Python's round (half to even) on the accumulated double, as the original does:
    /// "7" gives [0,166,333,500,666,832,999], not 167/833.</remarks>
    public static int[] SpaceTimesteps(int numTimesteps, string sectionCounts)
    {
        if (sectionCounts.StartsWith("ddim", StringComparison.Ordinal))
        {
            int desired = ParseCount(sectionCounts[4..]);
            for (int stride = 1; stride < numTimesteps; stride++)
            {
                var steps = Enumerable.Range(0, (numTimesteps + stride - 1) / stride).Select(k => k * stride).ToArray();
                if (steps.Length == desired) return steps;
            }
            throw new ArgumentException($"cannot create exactly {desired} steps with an integer stride");
        }
        return SpaceTimesteps(numTimesteps, sectionCounts.Split(',').Select(ParseCount).ToArray());
    }

    public static int[] SpaceTimesteps(int numTimesteps, IReadOnlyList<int> sectionCounts)
    {
        int sizePer = numTimesteps / sectionCounts.Count, extra = numTimesteps % sectionCounts.Count;
        int startIdx = 0;
        var all = new SortedSet<int>();
        for (int i = 0; i < sectionCounts.Count; i++)
        {
            int size = sizePer + (i < extra ? 1 : 0), count = sectionCounts[i];
            if (count < 1) throw new ArgumentException($"section {i} asks for {count} steps; need at least 1");
            if (size < count) throw new ArgumentException($"cannot divide section of {size} steps into {count}");
            double fracStride = count <= 1 ? 1 : (size - 1) / (double)(count - 1);
            double cur = 0.0;
            for (int k = 0; k < count; k++)
            {
                all.Add(startIdx + (int)Math.Round(cur, MidpointRounding.ToEven));
                cur += fracStride;
            }
            startIdx += size;
        }
        return all.ToArray();
    }

    private static int ParseCount(string s) =>
        int.TryParse(s, out var n) ? n : throw new ArgumentException($"'{s}' is not a step count");
}
