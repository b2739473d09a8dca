using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using static TorchSharp.torch;

namespace DiTServer.Core.Training;

/// <summary>Labelled images from one subfolder per class (torchvision's ImageFolder: classes are the subfolder names,
/// sorted ordinally), preprocessed once with the official <c>center_crop_arr</c> and held in memory as uint8.</summary>
/// <remarks>For latent training <see cref="LatentCache"/> encodes these once, both orientations, since they flip.
/// The random horizontal flip of train.py is applied per batch by the trainer with its own generator
/// (<see cref="ITrainingDataset.HorizontalFlip"/>), so resumed runs flip the same images.</remarks>
public sealed class ImageFolderDataset : ITrainingDataset
{
    private static readonly HashSet<string> Extensions = new(StringComparer.OrdinalIgnoreCase) { ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp" };

    private readonly Tensor images; // (N, C, S, S) uint8
    private readonly Tensor labels; // (N,) int64

    public int Count => (int)images.shape[0];
    public int ImageSize { get; }
    public int Channels { get; }
    public int NumClasses => ClassNames.Count;
    public bool HorizontalFlip => true;
    public IReadOnlyList<string> ClassNames { get; }

    private ImageFolderDataset(Tensor images, Tensor labels, int size, int channels, IReadOnlyList<string> classNames)
    {
        this.images = images;
        this.labels = labels;
        ImageSize = size;
        Channels = channels;
        ClassNames = classNames;
    }

    /// <param name="channels">3 for RGB, 1 for grayscale (converted with ImageSharp's luminance).</param>
    /// <param name="scan">Time and pixel limits (default: <see cref="DatasetScan.Default"/>). Only regular files are read, and
    /// each image's header is checked against the pixel limit before it is decoded.</param>
    public static ImageFolderDataset Load(string root, int imageSize, int channels = 3, DatasetScan? scan = null)
    {
        scan ??= DatasetScan.Default();
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"dataset folder not found: {root}");
        if (channels is not (1 or 3)) throw new ArgumentException("channels must be 1 or 3");
        if (imageSize < 1) throw new ArgumentException("image size must be positive");
        var classDirs = Directory.GetDirectories(root).Order(StringComparer.Ordinal).ToArray();
        if (classDirs.Length == 0) throw new InvalidDataException($"{root} has no class subfolders (ImageFolder layout: one subfolder per class)");

        var pixels = new List<byte[]>();
        var ys = new List<long>();
        for (int c = 0; c < classDirs.Length; c++)
            foreach (var file in Directory.EnumerateFiles(classDirs[c]).Where(f => { scan.Check(); return Extensions.Contains(Path.GetExtension(f)); })
                .Order(StringComparer.Ordinal))
            {
                scan.Check();
                RegularFile.Require(file);
                try
                {
                    var info = Image.Identify(file) ?? throw new UnknownImageFormatException("unknown image format");
                    scan.CheckPixels(file, info.Width, info.Height);
                    pixels.Add(Preprocess(file, imageSize, channels));
                }
                catch (Exception e) when (e is UnknownImageFormatException or InvalidImageContentException)
                {
                    throw new InvalidDataException($"{file}: not a readable image ({e.Message})");
                }
                ys.Add(c);
            }
        if (pixels.Count == 0) throw new InvalidDataException($"no images under {root}");

        var flat = new byte[pixels.Count * channels * imageSize * imageSize];
        for (int i = 0; i < pixels.Count; i++) pixels[i].CopyTo(flat, (long)i * pixels[i].Length);
        var x = tensor(flat, new long[] { pixels.Count, imageSize, imageSize, channels }, ScalarType.Byte).permute(0, 3, 1, 2).contiguous();
        return new ImageFolderDataset(x, tensor(ys.ToArray()), imageSize, channels,
            classDirs.Select(d => Path.GetFileName(d)!).ToArray());
    }

    /// <summary>ADM's / DiT train.py's <c>center_crop_arr</c>: halve with a box filter while the short side is at least
    /// twice the target, bicubic-resize the short side to the target, then crop the centre. Returns HWC bytes.</summary>
    public static byte[] Preprocess(string file, int size, int channels)
    {
        using var image = Image.Load<Rgb24>(file);
        while (Math.Min(image.Width, image.Height) >= 2 * size)
            image.Mutate(m => m.Resize(image.Width / 2, image.Height / 2, KnownResamplers.Box));
        double scale = (double)size / Math.Min(image.Width, image.Height);
        image.Mutate(m => m.Resize((int)Math.Round(image.Width * scale), (int)Math.Round(image.Height * scale), KnownResamplers.Bicubic));
        int x0 = (image.Width - size) / 2, y0 = (image.Height - size) / 2;
        image.Mutate(m => m.Crop(new Rectangle(x0, y0, size, size)));
        if (channels == 3)
        {
            var rgb = new byte[size * size * 3];
            image.CopyPixelDataTo(rgb);
            return rgb;
        }
        using var gray = image.CloneAs<L8>();
        var l = new byte[size * size];
        gray.CopyPixelDataTo(l);
        return l;
    }

    public (Tensor Images, Tensor Labels) Batch(Tensor indices)
    {
        var x = images.index_select(0, indices).to_type(ScalarType.Float32) / 127.5f - 1f; // (B, C, S, S) in [-1, 1]
        return (x, labels.index_select(0, indices));
    }

    public void Dispose()
    {
        images.Dispose();
        labels.Dispose();
    }
}
