namespace DiTServer.Core.Training;

/// <summary>The bounds on reading a dataset from a folder the server does not trust (the admin API's data root): a
/// pixel limit checked from each image's header before it is decoded, and a time limit on the whole scan, checked
/// between files.</summary>
/// <remarks>A 20000×20000 PNG added 1.4 GB of RSS before anything was checked; a folder of millions of files, or a slow
/// network mount, kept the admin POST open without end. The clock is injected, so tests need no sleep.</remarks>
public sealed class DatasetScan
{
    /// <summary>Default pixel limit of one image: 4096×4096 (16.8 M pixels, 50 MB decoded as RGB).</summary>
    public const long DefaultMaxImagePixels = 4096L * 4096;

    private readonly TimeProvider clock;
    private readonly long started;

    /// <param name="timeout">Longest scan; <see cref="Timeout.InfiniteTimeSpan"/> for none (the CLI reads the user's own files).</param>
    public DatasetScan(long maxImagePixels, TimeSpan timeout, TimeProvider? clock = null)
    {
        MaxImagePixels = maxImagePixels;
        Timeout = timeout;
        this.clock = clock ?? TimeProvider.System;
        started = this.clock.GetTimestamp();
    }

    /// <summary>No time limit and the default pixel limit: what the CLI and resumes of trusted runs use.</summary>
    public static DatasetScan Default() => new(DefaultMaxImagePixels, System.Threading.Timeout.InfiniteTimeSpan);

    public long MaxImagePixels { get; }
    public TimeSpan Timeout { get; }

    /// <summary>Throws <see cref="TimeoutException"/> once the scan has taken longer than <see cref="Timeout"/>.</summary>
    public void Check()
    {
        if (Timeout != System.Threading.Timeout.InfiniteTimeSpan && clock.GetElapsedTime(started) > Timeout)
            throw new TimeoutException($"reading the dataset took longer than {Timeout.TotalSeconds:0.###} s");
    }

    /// <summary>Throws <see cref="InvalidDataException"/> naming the file when a <paramref name="width"/>×<paramref name="height"/>
    /// image is over the pixel limit.</summary>
    public void CheckPixels(string file, long width, long height)
    {
        if (width * height > MaxImagePixels)
            throw new InvalidDataException($"{file}: {width}×{height} pixels is more than the limit of {MaxImagePixels} pixels per image");
    }
}
