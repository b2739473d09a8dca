using System.CommandLine;

namespace DiTServer.Api.Cli;

/// <summary>The command-line verbs. Bad input prints one line on stderr and exits with 2; never a stack trace.</summary>
public static class CommandLine
{
    public const int ExitOk = 0, ExitFailure = 1, ExitUsage = 2;

    private static readonly string[] Verbs = ["sample", "bench", "train", "export", "eval", "models"];

    public static bool IsVerb(string[] args) =>
        args.Length > 0 && (Verbs.Contains(args[0]) || args[0] is "--help" or "-h" or "-?" or "--version");

    /// <summary>Where the benchmarks went: their own program, so the server carries none of their code.</summary>
    public const string BenchMoved = "benchmarks are a separate program now: dotnet run --project tools/DiTServer.Bench -c Release -- bench …";

    public static async Task<int> RunAsync(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        if (args.Length > 0 && args[0] == "bench")
        {
            stderr.WriteLine($"error: {BenchMoved}");
            return ExitUsage;
        }
        var parsed = Root(stdout, stderr).Parse(args);
        if (parsed.Errors.Count > 0)
        {
            stderr.WriteLine($"error: {parsed.Errors[0].Message} (see --help)");
            return ExitUsage;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

    /// <summary>Every verb; also what the documented-commands test parses the commands of README and docs/ against.</summary>
    public static RootCommand Root(TextWriter stdout, TextWriter stderr) =>
        new("DiTServer: Diffusion Transformer inference from the command line")
        {
            SampleCommand.Create(stdout, stderr),
            TrainCommand.Create(stdout, stderr),
            ExportCommand.Create(stdout, stderr),
            EvalCommand.Create(stdout, stderr),
            ModelsCommand.Create(stdout, stderr),
        };

    /// <summary>The async twin of <see cref="Guard"/>; both map errors through <see cref="Report"/>.</summary>
    public static async Task<int> GuardAsync(TextWriter stderr, Func<Task<int>> body)
    {
        try { return await body(); }
        catch (Exception e) { return Report(stderr, e); }
    }

    /// <summary>Runs a verb body, mapping input errors to exit code 2 and anything else to 1, each as one line.</summary>
    public static int Guard(TextWriter stderr, Func<int> body)
    {
        try { return body(); }
        catch (Exception e) { return Report(stderr, e); }
    }

    /// <summary>One line on stderr and the exit code: 2 for bad input (a value that does not parse included), 1 for
    /// cancellation and anything else.</summary>
    private static int Report(TextWriter stderr, Exception e)
    {
        switch (e)
        {
            case UsageException or InvalidDataException or FileNotFoundException or DirectoryNotFoundException or ArgumentException
                or FormatException or OverflowException:
                stderr.WriteLine($"error: {e.Message}");
                return ExitUsage;
            case OperationCanceledException:
                stderr.WriteLine("cancelled");
                return ExitFailure;
            default:
                stderr.WriteLine($"error: {e.GetType().Name}: {e.Message}");
                return ExitFailure;
        }
    }
}

/// <summary>Bad command-line input; reported as one line with exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);
