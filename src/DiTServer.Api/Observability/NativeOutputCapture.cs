using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Serilog.Events;
using Serilog.Formatting;
using Serilog.Parsing;

namespace DiTServer.Api.Observability;

/// <summary>With <c>Logs:Format=json</c>, what native code writes to stdout and stderr (libtorch's
/// <c>[W … NNPACK.cpp:56] Could not initialize NNPACK! Unsupported hardware</c>, any other <c>TORCH_WARN</c>, the
/// runtime's own fatal messages) becomes one JSON log event per line, so every line of the process's output is JSON.</summary>
/// <remarks>
/// <para>libtorch writes to file descriptor 2 directly, below .NET's <see cref="Console"/>: no logger sees it. So at
/// start file descriptors 1 and 2 are pointed (<c>dup2</c>) at a pipe, and a thread turns each line read from it into a
/// Warning event with <c>Source: "native"</c>. .NET's own console output (Serilog's sink, anything written with
/// <see cref="Console"/>) goes to duplicates of the original descriptors saved first, through the same synchronized
/// writers, so lines never interleave.</para>
/// <para>Why capture rather than silence (e.g. <c>TORCH_CPP_LOG_LEVEL=ERROR</c> before libtorch loads): that silences
/// only libtorch's logging macros, not every native writer, and a warning the operator might need would be lost.</para>
/// <para>Once per process, and only for JSON logs: text logs are for people, and a native line among them breaks
/// nothing. Linux only (the server ships for Linux); elsewhere nothing is redirected.</para>
/// </remarks>
public static class NativeOutputCapture
{
    private static readonly object Gate = new();
    private static bool started;

    [DllImport("libc", SetLastError = true)] private static extern int dup(int fd);
    [DllImport("libc", SetLastError = true)] private static extern int dup2(int oldFd, int newFd);
    [DllImport("libc", SetLastError = true)] private static extern int pipe(int[] fds);
    [DllImport("libc", SetLastError = true)] private static extern int close(int fd);

    /// <summary>Redirects fds 1 and 2 into the pipe and starts the thread that logs its lines with <paramref name="formatter"/>.</summary>
    /// <returns>False when capture was already on, or is not possible here (then nothing changed).</returns>
    public static bool Start(ITextFormatter formatter)
    {
        if (!OperatingSystem.IsLinux()) return false;
        lock (Gate)
        {
            if (started) return false;
            Console.Out.Flush();
            Console.Error.Flush();
            int savedOut = dup(1), savedErr = dup(2);
            var fds = new int[2];
            if (savedOut < 0 || savedErr < 0 || pipe(fds) != 0)
            {
                if (savedOut >= 0) close(savedOut);
                if (savedErr >= 0) close(savedErr);
                return false;
            }
            // .NET's console writers go to the saved descriptors from now on; only native writes reach fds 1 and 2.
            var stdout = Writer(savedOut);
            var stderr = Writer(savedErr);
            Console.SetOut(stdout);
            Console.SetError(stderr);
            if (dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0)
            {
                // Put everything back as it was: a half-redirected process would lose lines.
                dup2(savedOut, 1);
                dup2(savedErr, 2);
                close(fds[0]);
                close(fds[1]);
                return false;
            }
            close(fds[1]); // fds 1 and 2 hold the write end now
            var reader = new StreamReader(new FileStream(new SafeFileHandle(fds[0], ownsHandle: true), FileAccess.Read, 1), Encoding.UTF8);
            new Thread(() => Pump(reader, formatter)) { IsBackground = true, Name = "native-output" }.Start();
            started = true;
            return true;
        }
    }

    private static TextWriter Writer(int fd) =>
        TextWriter.Synchronized(new StreamWriter(new FileStream(new SafeFileHandle(fd, ownsHandle: true), FileAccess.Write, 1),
            new UTF8Encoding(false)) { AutoFlush = true });

    private static readonly MessageTemplate Template = new MessageTemplateParser().Parse("{NativeOutput:l}");

    /// <summary>One event per line, written like every other event (to .NET's stdout, which is the original fd 1).</summary>
    private static void Pump(StreamReader reader, ITextFormatter formatter)
    {
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0) continue;
            var logEvent = new LogEvent(DateTimeOffset.Now, LogEventLevel.Warning, null, Template,
                [new LogEventProperty("NativeOutput", new ScalarValue(line)), new LogEventProperty("Source", new ScalarValue("native"))]);
            var text = new StringWriter();
            formatter.Format(logEvent, text);
            Console.Out.Write(text.ToString());
        }
    }
}
