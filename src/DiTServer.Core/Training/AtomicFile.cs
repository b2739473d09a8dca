namespace DiTServer.Core.Training;

/// <summary>Writes a file through <c>path.tmp</c> and a rename, so a reader (or a resume after a kill) sees either the
/// previous complete file or the new complete file, never a torn one.</summary>
public static class AtomicFile
{
    /// <summary>Streams the content into the temp file, flushes it to disk, then renames it over <paramref name="path"/>
    /// (creating the folder when needed).</summary>
    public static void Write(string path, Action<Stream> write)
    {
        path = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        WriteVia(path, tmp =>
        {
            using var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None);
            write(stream);
            stream.Flush(flushToDisk: true);
        });
    }

    /// <summary>For writers that take a path (safetensors, pickles): they write the temp file, which is then renamed.</summary>
    public static void WriteVia(string path, Action<string> writeFile)
    {
        string tmp = path + ".tmp";
        writeFile(tmp);
        File.Move(tmp, path, overwrite: true);
    }
}
