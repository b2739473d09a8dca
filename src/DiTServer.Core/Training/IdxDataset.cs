using System.Buffers.Binary;
using System.IO.Compression;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>Labelled grayscale images from IDX files (MNIST / Fashion-MNIST layout, gzip or raw).</summary>
/// <remarks>Format: big-endian magic 0x00000803 (ubyte, 3 dims) for images, 0x00000801 for labels, then dim sizes,
/// then the bytes (http://yann.lecun.com/exdb/mnist/). Images stay uint8 in memory; a batch is scaled to [−1, 1]
/// as train.py's Normalize(mean 0.5, std 0.5) does.</remarks>
public sealed class IdxDataset : ITrainingDataset
{
    private readonly Tensor images; // (N, 1, S, S) uint8, already padded
    private readonly Tensor labels; // (N,) int64

    public int Count { get; }
    public int ImageSize { get; }
    public int Channels => 1;
    public int NumClasses { get; }

    private IdxDataset(Tensor images, Tensor labels, int numClasses)
    {
        this.images = images;
        this.labels = labels;
        Count = (int)images.shape[0];
        ImageSize = (int)images.shape[2];
        NumClasses = numClasses;
    }

    /// <summary>Reads an image file and its label file; <paramref name="padTo"/> (e.g. 32) zero-pads 28×28 images
    /// to that side with background (value 0 → −1).</summary>
    public static IdxDataset Load(string imagesPath, string labelsPath, int? padTo = null, DatasetScan? scan = null)
    {
        var (imgDims, imgBytes) = ReadIdx(imagesPath, expectedDims: 3);
        scan?.Check();
        var (lblDims, lblBytes) = ReadIdx(labelsPath, expectedDims: 1);
        scan?.Check();
        if (imgDims[0] != lblDims[0])
            throw new InvalidDataException($"{imagesPath} has {imgDims[0]} images but {labelsPath} has {lblDims[0]} labels");
        int n = imgDims[0], h = imgDims[1], w = imgDims[2];
        if (h != w) throw new InvalidDataException($"{imagesPath}: images are {h}×{w}; only square images are supported");
        int side = padTo ?? h;
        if (side < h) throw new ArgumentException($"pad size {side} is smaller than the images ({h})");

        using var scope = NewDisposeScope();
        var x = tensor(imgBytes, new long[] { n, 1, h, w }, ScalarType.Byte);
        if (side > h)
        {
            int before = (side - h) / 2, after = side - h - before;
            x = nn.functional.pad(x, new long[] { before, after, before, after });
        }
        var y = tensor(lblBytes, ScalarType.Byte).to_type(ScalarType.Int64);
        int numClasses = lblBytes.Length == 0 ? 0 : lblBytes.Max() + 1;
        return new IdxDataset(x.contiguous().MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope(), numClasses);
    }

    /// <summary>Finds the train (or test) pair in a folder holding the usual names
    /// (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-…).</summary>
    public static IdxDataset FromFolder(string folder, bool test = false, int? padTo = null, DatasetScan? scan = null)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"dataset folder not found: {folder}");
        string prefix = test ? "t10k" : "train";
        string Find(string kind) =>
            new[] { $"{prefix}-{kind}", $"{prefix}-{kind}.gz" }
                .Select(n => Path.Combine(folder, n)).FirstOrDefault(File.Exists)
            ?? throw new FileNotFoundException($"no {prefix}-{kind}[.gz] in {folder}");
        return Load(Find("images-idx3-ubyte"), Find("labels-idx1-ubyte"), padTo, scan);
    }

    /// <summary>Dimension sizes and payload of one IDX file of unsigned bytes.</summary>
    public static (int[] Dims, byte[] Data) ReadIdx(string path, int expectedDims)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"IDX file not found: {path}", path);
        RegularFile.Require(path); // a FIFO would block ReadAllBytes without end
        byte[] raw = File.ReadAllBytes(path);
        if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var ms = new MemoryStream();
            try { gz.CopyTo(ms); }
            catch (InvalidDataException e) { throw new InvalidDataException($"{path}: corrupt gzip data ({e.Message})"); }
            raw = ms.ToArray();
        }
        if (raw.Length < 4 || raw[0] != 0 || raw[1] != 0)
            throw new InvalidDataException($"{path}: not an IDX file (bad magic number)");
        if (raw[2] != 0x08)
            throw new InvalidDataException($"{path}: IDX element type 0x{raw[2]:x2} is not unsigned byte (0x08)");
        if (raw[3] != expectedDims)
            throw new InvalidDataException($"{path}: IDX file has {raw[3]} dimension(s), expected {expectedDims}");
        int header = 4 + 4 * expectedDims;
        if (raw.Length < header) throw new InvalidDataException($"{path}: truncated IDX header");
        var dims = new int[expectedDims];
        long count = 1;
        for (int i = 0; i < expectedDims; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(raw.AsSpan(4 + 4 * i));
            if (dims[i] < 0) throw new InvalidDataException($"{path}: negative dimension size");
            count *= dims[i];
        }
        if (raw.Length - header != count)
            throw new InvalidDataException($"{path}: expected {count} data bytes for dimensions [{string.Join(", ", dims)}], found {raw.Length - header}");
        return (dims, raw[header..]);
    }

    public (Tensor Images, Tensor Labels) Batch(Tensor indices)
    {
        var x = images.index_select(0, indices).to_type(ScalarType.Float32) / 127.5f - 1f; // (B, 1, S, S) in [-1, 1]
        return (x, labels.index_select(0, indices));
    }

    /// <summary>Images [from, from+count) scaled to [−1, 1], with their labels (for evaluation).</summary>
    public (Tensor Images, Tensor Labels) Slice(int from, int count)
    {
        using var idx = arange(from, from + count, dtype: ScalarType.Int64);
        return Batch(idx);
    }

    public void Dispose()
    {
        images.Dispose();
        labels.Dispose();
    }
}
