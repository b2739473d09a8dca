using System.Buffers.Binary;
using System.IO.Compression;

namespace DiTServer.Tests.Shared;

/// <summary>Writes small MNIST-layout IDX datasets for tests: class k is a bright k-th horizontal band plus noise,
/// so a tiny model can learn the classes quickly.</summary>
public static class SyntheticIdx
{
    /// <summary>Writes {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] into <paramref name="folder"/>.</summary>
    public static (byte[] Images, byte[] Labels) Write(string folder, int count = 64, int side = 8, int classes = 2, bool gzip = true, int seed = 1,
        string prefix = "train")
    {
        Directory.CreateDirectory(folder);
        var rng = new Random(seed);
        var pixels = new byte[count * side * side];
        var labels = new byte[count];
        for (int n = 0; n < count; n++)
        {
            int label = n % classes;
            labels[n] = (byte)label;
            int band = label * side / classes;
            for (int r = 0; r < side; r++)
                for (int c = 0; c < side; c++)
                    pixels[(n * side + r) * side + c] = (byte)(r >= band && r < band + Math.Max(1, side / classes) ? 200 + rng.Next(56) : rng.Next(40));
        }
        string ext = gzip ? ".gz" : "";
        WriteIdx(Path.Combine(folder, $"{prefix}-images-idx3-ubyte" + ext), pixels, [count, side, side], gzip);
        WriteIdx(Path.Combine(folder, $"{prefix}-labels-idx1-ubyte" + ext), labels, [count], gzip);
        return (pixels, labels);
    }

    /// <summary>One IDX file of unsigned bytes: magic 0x0000_08_dims, big-endian sizes, data.</summary>
    public static void WriteIdx(string path, byte[] data, int[] dims, bool gzip)
    {
        var bytes = new byte[4 + 4 * dims.Length + data.Length];
        bytes[2] = 0x08;
        bytes[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(bytes, 4 + 4 * dims.Length);
        if (!gzip)
        {
            File.WriteAllBytes(path, bytes);
            return;
        }
        using var file = File.Create(path);
        using var gz = new GZipStream(file, CompressionLevel.Fastest);
        gz.Write(bytes);
    }
}
