using DiTServer.Core.Model;
using DiTServer.Core.Training;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>ImageFolder layout: classes from subfolder names, center crop + resize, errors named.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class ImageFolderDatasetTests : IDisposable
{
    private readonly string root = Directory.CreateTempSubdirectory("dit-imagefolder-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    private void Write(string cls, string file, int w, int h, Func<int, int, Rgb24> color)
    {
        Directory.CreateDirectory(Path.Combine(root, cls));
        using var image = new Image<Rgb24>(w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                image[x, y] = color(x, y);
        image.SaveAsPng(Path.Combine(root, cls, file));
    }

    [Fact]
    public void Loads_classes_by_sorted_folder_name_center_cropped_to_size()
    {
        // A wide image: red left third, green middle, blue right third; the centre crop keeps only green.
        Write("b_second", "wide.png", 48, 16, (x, _) => x < 16 ? new Rgb24(255, 0, 0) : x < 32 ? new Rgb24(0, 255, 0) : new Rgb24(0, 0, 255));
        Write("a_first", "one.png", 20, 20, (_, _) => new Rgb24(255, 255, 255));
        Write("a_first", "two.png", 8, 8, (_, _) => new Rgb24(0, 0, 0));
        File.WriteAllText(Path.Combine(root, "a_first", "notes.txt"), "ignored: not an image");

        using var data = ImageFolderDataset.Load(root, imageSize: 8);
        Assert.Equal(["a_first", "b_second"], data.ClassNames);
        Assert.Equal((3, 8, 3, 2), (data.Count, data.ImageSize, data.Channels, data.NumClasses));
        Assert.True(data.HorizontalFlip);
        using var scope = NewDisposeScope();
        var (x, y) = data.Batch(arange(3L));
        Assert.Equal(new long[] { 0, 0, 1 }, y.data<long>().ToArray());
        Assert.True(x[0].eq(1).all().item<bool>(), "white → +1");
        Assert.True(x[1].eq(-1).all().item<bool>(), "black → −1");
        var green = tensor(new float[] { -1, 1, -1 }).view(3, 1, 1).expand(3, 8, 8);
        Assert.True(allclose(x[2], green, rtol: 0, atol: 0.02), "centre crop of the wide image is green only");

        // The trainer flips with its own generator and trains on it.
        using var trainer = new Trainer(new DiTConfig { InputSize = 8, PatchSize = 4, InChannels = 3, HiddenSize = 32, Depth = 1, NumHeads = 2,
            NumClasses = 2 },
            new TrainingOptions { BatchSize = 4, Steps = 2 }, data);
        Assert.True(double.IsFinite(trainer.TrainStep().Loss));
    }

    [Fact]
    public void Grayscale_and_bad_inputs()
    {
        Write("only", "gray.png", 10, 10, (_, _) => new Rgb24(128, 128, 128));
        using (var data = ImageFolderDataset.Load(root, imageSize: 4, channels: 1))
            Assert.Equal(1, data.Channels);

        File.WriteAllText(Path.Combine(root, "only", "broken.png"), "not a png");
        var e = Assert.Throws<InvalidDataException>(() => ImageFolderDataset.Load(root, 4));
        Assert.Contains("broken.png", e.Message);

        var empty = Directory.CreateDirectory(Path.Combine(root, "empty-root")).FullName;
        Assert.Contains("no class subfolders", Assert.Throws<InvalidDataException>(() => ImageFolderDataset.Load(empty, 4)).Message);
    }
}
