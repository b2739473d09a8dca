namespace DiTServer.Core.Tests;

/// <summary>The repository's demo model (models/dit-fashion-mnist: a trained 28×28 grayscale pixel-space DiT), for
/// tests whose claim needs a model that draws real images (an image-to-image run that stays close to its input).</summary>
public static class DemoModel
{
    public static string Path { get; } = Find();

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "DiTServer.sln"))) return System.IO.Path.Combine(dir.FullName, "models", "dit-fashion-mnist");
        throw new DirectoryNotFoundException("DiTServer.sln not found above the test binaries");
    }
}
