namespace DiTServer.Tests.Shared;

/// <summary>Where the reference fixtures live: $DIT_FIXTURES, or shared/fixtures in a folder above the test binaries
/// (CI and developers keep ../shared beside the repository). Compiled into both test projects.</summary>
public static class FixturePaths
{
    public static string Root { get; } = Find();

    public static string Of(string relative) => Path.Combine(Root, relative);

    private static string Find()
    {
        var env = Environment.GetEnvironmentVariable("DIT_FIXTURES");
        if (!string.IsNullOrEmpty(env)) return env;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "shared", "fixtures");
            if (File.Exists(Path.Combine(candidate, "README.md"))) return candidate;
        }
        throw new DirectoryNotFoundException($"shared/fixtures not found above {AppContext.BaseDirectory}; set DIT_FIXTURES");
    }
}
