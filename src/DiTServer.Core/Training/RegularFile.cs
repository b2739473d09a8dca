using System.Runtime.InteropServices;

namespace DiTServer.Core.Training;

/// <summary>Dataset readers open only regular files: a FIFO, socket or device named like an image (<c>x.png</c>) would
/// block the reader on open (the admin POST hung and held the start lock) or stream without end.</summary>
/// <remarks>.NET has no public API for a file's type on Unix (<see cref="FileAttributes"/> says only directory or not),
/// so this asks the kernel with <c>statx(2)</c>, whose result layout is the same on every architecture (unlike
/// <c>struct stat</c>). Symbolic links are followed: the confinement checks have already decided where they may lead.</remarks>
public static class RegularFile
{
    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1;
    private const int ModeOffset = 28; // struct statx: u32 mask, u32 blksize, u64 attributes, u32 nlink, u32 uid, u32 gid, u16 mode
    private const ushort TypeMask = 0xF000, Regular = 0x8000;

    /// <summary>True when <paramref name="path"/> is (or links to) a regular file.</summary>
    public static bool Is(string path)
    {
        if (!OperatingSystem.IsLinux()) return File.Exists(path); // other systems: no FIFO check (the server ships for Linux)
        var buffer = new byte[256];
        if (Statx(AtFdCwd, path, 0, StatxType, buffer) != 0) return false;
        ushort mode = BitConverter.ToUInt16(buffer, ModeOffset);
        return (mode & TypeMask) == Regular;
    }

    /// <summary>Throws <see cref="InvalidDataException"/> naming <paramref name="path"/> unless it is a regular file.</summary>
    public static void Require(string path)
    {
        if (!Is(path))
            throw new InvalidDataException($"{path} is not a regular file (a FIFO, socket, device or missing file); datasets are read from regular files only");
    }

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);
}
