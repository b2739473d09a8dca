namespace DiTServer.Api.Admin;

/// <summary>Resolves a user-supplied path inside a root folder, refusing anything that escapes it:
/// <c>..</c> segments, absolute paths elsewhere, and symbolic links (at any level) that point outside.</summary>
public static class ConfinedPath
{
    /// <returns>The absolute path inside <paramref name="root"/>.</returns>
    /// <exception cref="ArgumentException">The path escapes the root; the message says how.</exception>
    public static string Resolve(string root, string userPath, string what)
    {
        if (string.IsNullOrWhiteSpace(userPath)) throw new ArgumentException($"{what} is empty");
        if (userPath.Contains('\0')) throw new ArgumentException($"{what} contains a NUL character");
        var rootFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        var segments = userPath.Replace('\\', '/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments.Contains(".."))
            throw new ArgumentException($"{what} '{userPath}' must not contain '..'");
        var full = Path.GetFullPath(Path.IsPathRooted(userPath) ? userPath : Path.Combine(rootFull, userPath));
        if (!IsInside(rootFull, full))
            throw new ArgumentException($"{what} '{userPath}' is outside the allowed folder {rootFull}");

        // Every existing component below the root must be a real folder/file or a link that stays inside.
        var realRoot = RealPath(rootFull);
        var current = rootFull;
        foreach (var part in Path.GetRelativePath(rootFull, full).Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            if (part == ".") continue;
            current = Path.Combine(current, part);
            if (!File.Exists(current) && !Directory.Exists(current) && new FileInfo(current).LinkTarget is null) break; // rest does not exist yet
            var real = RealPath(current);
            if (!IsInside(realRoot, real))
                throw new ArgumentException($"{what} '{userPath}' leads through a link outside the allowed folder");
        }
        return full;
    }

    private static string RealPath(string path)
    {
        FileSystemInfo info = Directory.Exists(path) ? new DirectoryInfo(path) : new FileInfo(path);
        var target = info.LinkTarget is null ? null : info.ResolveLinkTarget(returnFinalTarget: true);
        if (info.LinkTarget is not null && target is null)
            throw new ArgumentException($"'{path}' is a dangling link");
        return Path.TrimEndingDirectorySeparator(Path.GetFullPath(target?.FullName ?? info.FullName));
    }

    private static bool IsInside(string root, string path) =>
        path == root || path.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal);
}
