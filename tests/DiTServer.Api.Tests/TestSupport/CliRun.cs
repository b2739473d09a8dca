using DiTServer.Api.Cli;

namespace DiTServer.Api.Tests;

/// <summary>The CLI in process (<see cref="CommandLine.RunAsync"/>), as the verb tests drive it.</summary>
internal static class CliRun
{
    /// <summary>Runs one command line; its exit code and what it wrote to stdout and stderr.</summary>
    public static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary><paramref name="args"/> with <paramref name="option"/> set to <paramref name="value"/>: its value replaced
    /// where the option is given, else the pair added at the end.</summary>
    public static string[] WithOption(IEnumerable<string> args, string option, string value)
    {
        var list = args.ToList();
        int at = list.IndexOf(option);
        if (at >= 0) list[at + 1] = value; else list.AddRange([option, value]);
        return [.. list];
    }

    /// <summary>Bad input as the CLI must answer it: exit 2 and one line on stderr that says <paramref name="expected"/>.</summary>
    public static void AssertUsageError(int code, string err, string expected, StringComparison comparison = StringComparison.Ordinal)
    {
        Assert.True(code == CommandLine.ExitUsage, $"exit {code}: {err}");
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains(expected, err, comparison);
    }
}
