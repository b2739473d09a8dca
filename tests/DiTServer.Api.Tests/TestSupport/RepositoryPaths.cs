namespace DiTServer.Api.Tests;

/// <summary>The repository checkout the tests run from (the folder holding DiTServer.sln).</summary>
internal static class RepositoryPaths
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "DiTServer.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("DiTServer.sln not found above the test binaries");
    }
}
