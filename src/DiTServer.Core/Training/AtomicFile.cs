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
            using var file = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None);
            using var stream = FaultHook.Wrap(file);
            write(stream);
            file.Flush(flushToDisk: true);
        });
    }

    /// <summary>Test seam for crash tests (never set in production): with <c>DITSERVER_FAULT_STALL_WRITE=MARKER;N</c>
    /// the process's N-th atomic write stops for good after its first 4 KiB, once it has created the file MARKER, so a
    /// test that waits for MARKER and then kills the process is certain to have killed it inside a write.</summary>
    private static class FaultHook
    {
        private static int writes;
        private static readonly (string Marker, int Nth)? Setting = Parse(Environment.GetEnvironmentVariable("DITSERVER_FAULT_STALL_WRITE"));

        private static (string, int)? Parse(string? value) =>
            value?.Split(';') is [var marker, var nth] && int.TryParse(nth, out int n) && n > 0 ? (marker, n) : null;

        public static Stream Wrap(Stream inner) =>
            Setting is { } s && Interlocked.Increment(ref writes) == s.Nth ? new StallingStream(inner, s.Marker) : inner;

        private sealed class StallingStream(Stream inner, string marker) : Stream
        {
            private long written;
            public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
            public override void Write(ReadOnlySpan<byte> buffer)
            {
                inner.Write(buffer);
                written += buffer.Length;
                if (written < 4096) return;
                inner.Flush();
                File.WriteAllText(marker, written.ToString(System.Globalization.CultureInfo.InvariantCulture));
                Thread.Sleep(Timeout.Infinite);
            }
            public override void Flush() => inner.Flush();
            public override bool CanRead => false;
            public override bool CanSeek => false;
            public override bool CanWrite => true;
            public override long Length => inner.Length;
            public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
            public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
            public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
            public override void SetLength(long value) => throw new NotSupportedException();
        }
    }

    /// <summary>For writers that take a path (safetensors, pickles): they write the temp file, which is then renamed.</summary>
    public static void WriteVia(string path, Action<string> writeFile)
    {
        string tmp = path + ".tmp";
        writeFile(tmp);
        File.Move(tmp, path, overwrite: true);
    }
}
