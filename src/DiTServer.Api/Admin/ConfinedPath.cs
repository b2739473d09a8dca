namespace DiTServer.Api.Admin;

/// <summary>Resolves a user-supplied path inside a root folder, refusing anything that escapes it: <c>..</c> segments,
/// absolute paths elsewhere, and symbolic links (at any level, in chains, relative or absolute) that lead outside.</summary>
/// <remarks>Containment is checked on the path the kernel would open: every component is resolved like
/// <c>realpath(3)</c>, a link's relative target from the link's <em>real</em> parent folder, <c>..</c> in a target from
/// the real folder reached so far. Resolving a relative target against the path as written (what
/// <see cref="FileSystemInfo.ResolveLinkTarget"/> does) let <c>a/b/c/x</c> pass when <c>a/b/c</c> linked to the root
/// and <c>x</c> pointed to <c>../outside</c>. Components that do not exist yet (an output folder to create) are
/// taken as written.</remarks>
public static class ConfinedPath
{
    /// <summary>Links followed in one resolution before giving up, as the kernel's ELOOP limit.</summary>
    private const int MaxLinks = 40;

    /// <returns>The absolute path inside <paramref name="root"/>, as written (links not replaced).</returns>
    /// <exception cref="ArgumentException">The path escapes the root; the message says how.</exception>
    public static string Resolve(string root, string userPath, string what)
    {
        if (string.IsNullOrWhiteSpace(userPath)) throw new ArgumentException($"{what} is empty");
        if (userPath.Contains('\0')) throw new ArgumentException($"{what} contains a NUL character");
        var rootFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        var segments = userPath.Replace('\\', '/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments.Contains(".."))
            throw new ArgumentException($"{what} '{userPath}' must not contain '..'");
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(Path.IsPathRooted(userPath) ? userPath : Path.Combine(rootFull, userPath)));
        if (!IsInside(rootFull, full))
            throw new ArgumentException($"{what} '{userPath}' is outside the allowed folder {rootFull}");

        string realRoot, real;
        try
        {
            realRoot = RealPath(rootFull);
            real = RealPath(full);
        }
        catch (IOException e) { throw new ArgumentException($"{what} '{userPath}' cannot be resolved: {e.Message}"); }
        if (!IsInside(realRoot, real))
            throw new ArgumentException($"{what} '{userPath}' leads through a link outside the allowed folder");
        return full;
    }

    /// <summary>Checks that everything a dataset reader opens in <paramref name="folder"/> (its entries and the entries
    /// of its subfolders: IDX files, class folders and their images) resolves inside <paramref name="root"/>: a link
    /// inside a confined folder must not make the reader open a file elsewhere.</summary>
    /// <exception cref="ArgumentException">An entry leads outside; the message names it relative to the folder.</exception>
    public static void RequireContentsInside(string root, string folder, string what)
    {
        var realRoot = RealPath(Path.TrimEndingDirectorySeparator(Path.GetFullPath(root)));
        foreach (var entry in Directory.EnumerateFileSystemEntries(folder).Order(StringComparer.Ordinal))
        {
            Check(entry);
            if (Directory.Exists(entry))
                foreach (var inner in Directory.EnumerateFileSystemEntries(entry)) Check(inner);
        }

        void Check(string entry)
        {
            string real;
            try { real = RealPath(entry); }
            catch (IOException e) { throw new ArgumentException($"{what}: '{Path.GetRelativePath(folder, entry)}' cannot be resolved: {e.Message}"); }
            if (!IsInside(realRoot, real))
                throw new ArgumentException($"{what}: '{Path.GetRelativePath(folder, entry)}' leads through a link outside the allowed folder");
        }
    }

    /// <summary>The path with every symbolic link resolved the way the kernel does; the part from the first component
    /// that does not exist on is appended as written.</summary>
    /// <exception cref="IOException">More than <see cref="MaxLinks"/> links (a loop).</exception>
    public static string RealPath(string absolutePath)
    {
        var pending = new Stack<string>(Components(absolutePath).Reverse());
        var resolved = new List<string>(); // the real path so far, as components below "/"
        int links = 0;
        bool missing = false;
        while (pending.Count > 0)
        {
            var part = pending.Pop();
            if (part == ".") continue;
            if (part == "..")
            {
                if (resolved.Count > 0) resolved.RemoveAt(resolved.Count - 1); // ".." of "/" is "/"
                continue;
            }
            var candidate = Join(resolved.Append(part));
            string? target = missing ? null : LinkTarget(candidate);
            if (target is null)
            {
                // A real file or folder, or from here on nothing that exists yet.
                missing |= !File.Exists(candidate) && !Directory.Exists(candidate);
                resolved.Add(part);
                continue;
            }
            if (++links > MaxLinks) throw new IOException($"too many levels of symbolic links at {candidate}");
            // The target replaces the link: an absolute one restarts from "/", a relative one goes on from the link's real parent.
            if (Path.IsPathRooted(target)) resolved.Clear();
            foreach (var t in Components(target).Reverse()) pending.Push(t);
        }
        return Join(resolved);
    }

    private static string? LinkTarget(string path)
    {
        try { return new FileInfo(path).LinkTarget; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private static IEnumerable<string> Components(string path) => path.Split('/', StringSplitOptions.RemoveEmptyEntries);

    private static string Join(IEnumerable<string> components) => "/" + string.Join('/', components);

    private static bool IsInside(string root, string path) =>
        path == root || path.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal) || root == "/";
}
