using System.CommandLine;

namespace DiTServer.Bench;

/// <summary>The benchmark program: <c>dotnet run --project tools/DiTServer.Bench -c Release -- bench forward …</c>.
/// A leading <c>bench</c> is optional, so commands written for the server's former <c>bench</c> verb work unchanged.</summary>
/// <remarks>No top-level statements: those would declare a global <c>Program</c> beside the server's, which
/// <see cref="Evidence.ChildServer"/> starts.</remarks>
public static class BenchProgram
{
    public static Task<int> Main(string[] args) => RunAsync(args);

    public static async Task<int> RunAsync(string[] args, TextWriter? stdout = null, TextWriter? stderr = null)
    {
        stdout ??= Console.Out;
        stderr ??= Console.Error;
        var parsed = Root(stdout, stderr).Parse(Verb(args));
        if (parsed.Errors.Count > 0)
        {
            stderr.WriteLine($"error: {parsed.Errors[0].Message} (see --help)");
            return CommandLine.ExitUsage;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = stdout, Error = stderr });
    }

    /// <summary>The arguments without the optional leading <c>bench</c>.</summary>
    public static string[] Verb(string[] args) => args.Length > 0 && args[0] == "bench" ? args[1..] : args;

    /// <summary>Every benchmark as a subcommand; also what the documented-commands test parses against.</summary>
    public static RootCommand Root(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("DiTServer benchmarks and reliability runs (programs, not tests)");
        foreach (var command in BenchCommand.Create(stdout, stderr)) root.Subcommands.Add(command);
        return root;
    }
}
