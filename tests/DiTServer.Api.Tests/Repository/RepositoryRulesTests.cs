namespace DiTServer.Api.Tests;

/// <summary>House rules that hold for every file in the repository, checked so that they keep holding.</summary>
public class RepositoryRulesTests
{
    // .editorconfig sets max_line_length = 160 for *.cs; editors only show it, this test enforces it.
    private const int MaxLineLength = 160;

    [Fact]
    public void No_CSharp_line_is_longer_than_160_characters()
    {
        var offenders = new List<string>();
        foreach (var file in SourceFiles())
        {
            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                int length = lines[i].EnumerateRunes().Count();
                if (length > MaxLineLength)
                    offenders.Add($"{Path.GetRelativePath(RepositoryPaths.Root, file)}:{i + 1}:{length}");
            }
        }
        Assert.True(offenders.Count == 0,
            $"{offenders.Count} line(s) longer than {MaxLineLength} characters (file:line:length; first 20):\n" +
            string.Join("\n", offenders.Take(20)));
    }

    // The README is a front page (issue 21): what the server is, how to run and test it, one request, the clients and
    // links. Reference text belongs in docs/, where it had grown to 590 lines before.
    private const int MaxReadmeLines = 200;

    [Fact]
    public void README_is_a_front_page_of_at_most_200_lines()
    {
        int lines = File.ReadAllLines(Path.Combine(RepositoryPaths.Root, "README.md")).Length;
        Assert.True(lines <= MaxReadmeLines, $"README.md has {lines} lines (at most {MaxReadmeLines}): move reference text to docs/");
    }

    /// <summary>Every *.cs file under the repository root, except build outputs (any bin or obj folder).</summary>
    private static IEnumerable<string> SourceFiles() =>
        Directory.EnumerateFiles(RepositoryPaths.Root, "*.cs", SearchOption.AllDirectories)
            .Where(f => !Path.GetRelativePath(RepositoryPaths.Root, f)
                .Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar)
                .Any(segment => segment is "bin" or "obj"))
            .Order(StringComparer.Ordinal);

    /// <summary>Folders of a test project that mirror no source folder: shared helpers, checks of the repository's own
    /// files, and the benchmark program's commands.</summary>
    private static readonly string[] TestOnlyFolders = ["TestSupport", "Repository", "Bench"];

    [Theory]
    [InlineData("DiTServer.Core")]
    [InlineData("DiTServer.Api")]
    public void Tests_mirror_src_a_test_of_src_X_Y_lives_in_tests_X_Tests_Y(string project)
    {
        var src = Path.Combine(RepositoryPaths.Root, "src", project);
        var tests = Path.Combine(RepositoryPaths.Root, "tests", project + ".Tests");
        var sourceFolders = Directory.GetDirectories(src).Select(Path.GetFileName).ToHashSet();
        var misplaced = Directory.EnumerateFiles(tests, "*.cs", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(tests, f))
            .Where(f => !f.StartsWith("bin" + Path.DirectorySeparatorChar) && !f.StartsWith("obj" + Path.DirectorySeparatorChar))
            .Where(f => !Mirrors(Path.GetDirectoryName(f) ?? ""))
            .ToList();
        // A file sits in a source folder's mirror (that folder, or a subfolder src also has), or in a test-only folder.
        bool Mirrors(string folder)
        {
            if (folder.Length == 0) return false;
            string top = folder.Split(Path.DirectorySeparatorChar)[0];
            return TestOnlyFolders.Contains(top) || (sourceFolders.Contains(top) && Directory.Exists(Path.Combine(src, folder)));
        }
        Assert.True(misplaced.Count == 0, $"test files outside a folder that mirrors src/{project} (or {string.Join(", ", TestOnlyFolders)}): " +
            string.Join(", ", misplaced));
    }
}
