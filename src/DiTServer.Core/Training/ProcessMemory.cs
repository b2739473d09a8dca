using System.Globalization;

namespace DiTServer.Core.Training;

/// <summary>The process's resident memory from <c>/proc/self/status</c>, to report what a training run really took beside
/// <see cref="TrainingFootprint"/>'s estimate (and to test that estimate). Null where there is no procfs.</summary>
public static class ProcessMemory
{
    /// <summary>Resident set size now (VmRSS), in bytes.</summary>
    public static long? Rss() => Read("VmRSS:");

    /// <summary>Highest resident set size since start or the last <see cref="ResetPeak"/> (VmHWM), in bytes.</summary>
    public static long? Peak() => Read("VmHWM:");

    /// <summary>Sets the peak back to the current RSS (<c>echo 5 &gt; /proc/self/clear_refs</c>, Linux 4.0+), so that
    /// <see cref="Peak"/> then measures one phase; false where that is not possible.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    private static long? Read(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024; // "  123456 kB"
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { }
        return null;
    }
}
