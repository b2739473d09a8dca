using System.Buffers.Binary;
using DiTServer.Core.Training;

namespace DiTServer.Core.Evaluation;

/// <summary>The generated images of one seed set, as the server returns them (8-bit grayscale pixels), with the class
/// each was asked for; saved and read as an IDX pair so a study can be judged again without sampling again.</summary>
/// <param name="Seed">The seed of the set's first sampling call (call k uses Seed + k).</param>
/// <param name="Pixels">Count × Side × Side bytes, row-major per image.</param>
/// <param name="GenerationSeconds">Sampling time; 0 for a set read from files.</param>
public sealed record SampleSet(long Seed, int Side, byte[] Pixels, int[] Labels, double GenerationSeconds)
{
    public int Count => Labels.Length;

    public string ImagesFile(string folder) => Path.Combine(folder, $"seed-{Seed}-images-idx3-ubyte");
    public string LabelsFile(string folder) => Path.Combine(folder, $"seed-{Seed}-labels-idx1-ubyte");

    /// <summary>Writes <c>seed-{Seed}-images-idx3-ubyte</c> and <c>seed-{Seed}-labels-idx1-ubyte</c> (the MNIST format).</summary>
    public void Save(string folder)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(ImagesFile(folder), Idx(Pixels, Count, Side, Side));
        File.WriteAllBytes(LabelsFile(folder), Idx(Labels.Select(l => checked((byte)l)).ToArray(), Count));
    }

    /// <summary>Reads a set that <see cref="Save"/> wrote for <paramref name="seed"/>.</summary>
    public static SampleSet Load(string folder, long seed)
    {
        var probe = new SampleSet(seed, 0, [], [], 0);
        var (dims, pixels) = IdxDataset.ReadIdx(probe.ImagesFile(folder), expectedDims: 3);
        var (labelDims, labels) = IdxDataset.ReadIdx(probe.LabelsFile(folder), expectedDims: 1);
        if (dims[0] != labelDims[0] || dims[1] != dims[2])
            throw new InvalidDataException($"{probe.ImagesFile(folder)}: {dims[0]} images of {dims[1]}×{dims[2]} with {labelDims[0]} labels");
        return new SampleSet(seed, dims[1], pixels, labels.Select(b => (int)b).ToArray(), 0);
    }

    private static byte[] Idx(byte[] data, params int[] dims)
    {
        var bytes = new byte[4 + 4 * dims.Length + data.Length];
        bytes[2] = 0x08; // unsigned byte
        bytes[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(bytes, 4 + 4 * dims.Length);
        return bytes;
    }
}
