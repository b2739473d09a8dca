using System.Text;
using System.Text.RegularExpressions;
using DiTServer.Api.Cli;
using DiTServer.Bench;
using DiTServer.Tests.Shared;

namespace DiTServer.Api.Tests;

/// <summary>Commands in README.md and docs/ are code: every fenced block that invokes a CLI verb carries a marker,
/// and this test parses each command against the real command tree and runs the ones marked <c>run</c> with tiny
/// settings (the marker's overrides). Before, <c>eval train-classifier</c> and an <c>eval</c> without
/// <c>--data</c>/<c>--classifier</c> sat in the README, failing for whoever copied them.</summary>
/// <remarks>Markers, on the line before the fence:
/// <c>&lt;!-- command-test: parse --&gt;</c> (long, needs a network or a GPU: parsed only) or
/// <c>&lt;!-- command-test: run VERB: --opt value …; VERB: … --&gt;</c> (run in-process; each override replaces that
/// option's value in the documented command, or is added). Placeholders: <c>{tmp}</c> a fresh folder, <c>{idx28}</c> a
/// small 28×28 IDX dataset (train and t10k), <c>{fixtures}</c> the fixtures folder.</remarks>
public sealed partial class DocumentedCommandsTests : IDisposable
{
    private const string MarkerPrefix = "<!-- command-test:";
    private readonly string tmp = Directory.CreateTempSubdirectory("dit-docs-").FullName;

    public void Dispose() => Directory.Delete(tmp, recursive: true);

    private static string[] DocumentFiles() =>
        ["README.md", .. Directory.GetFiles(Path.Combine(RepositoryPaths.Root, "docs"), "*.md")
            .Select(f => Path.GetRelativePath(RepositoryPaths.Root, f)).Order()];

    public static TheoryData<string> Documents() => new(DocumentFiles());

    [Theory]
    [MemberData(nameof(Documents))]
    public async Task Every_documented_cli_command_parses_and_marked_ones_run(string document)
    {
        var blocks = Blocks(File.ReadAllText(Path.Combine(RepositoryPaths.Root, document)));
        foreach (var block in blocks)
        {
            var commands = block.Lines.Select(Invocation).OfType<string[]>().ToList();
            if (commands.Count == 0) continue;
            Assert.True(block.Marker is not null,
                $"{document}:{block.Line}: a fenced block with CLI commands needs a '{MarkerPrefix} parse|run … -->' line before it");
            var (mode, overrides) = ParseMarker(block.Marker!);
            foreach (var args in commands)
            {
                var where = $"{document}:{block.Line}: {string.Join(' ', args)}";
                var errors = ParseErrors(args);
                Assert.True(errors.Count == 0, $"{where}\n  does not parse: {string.Join("; ", errors)}");
                if (mode != "run") continue;
                var run = Override(args, overrides.GetValueOrDefault(args[0], []));
                var (stdout, stderr) = (new StringWriter(), new StringWriter());
                int code = await RunInRepository(run, stdout, stderr);
                Assert.True(code == 0, $"{where}\n  ran as: {string.Join(' ', run)}\n  exit {code}: {stderr}");
            }
        }
    }

    /// <summary>Inline commands are parsed too. At the start of a table cell a command stands alone, so it must parse completely
    /// (<c>`bench soak --requests 10000`</c> without its required <c>--model</c> fails); in prose, with "…" or without
    /// options it is a fragment or a verb's name, so only unknown verbs and options fail (<c>`eval train-classifier`</c>).</summary>
    [Theory]
    [MemberData(nameof(Documents))]
    public void Every_inline_cli_command_parses(string document)
    {
        var failures = new List<string>();
        foreach (var line in File.ReadAllLines(Path.Combine(RepositoryPaths.Root, document)))
            foreach (Match m in InlineCode().Matches(line))
            {
                var span = m.Groups[1].Value;
                // A command that opens a table cell stands alone; one inside a sentence is a mention.
                bool fragment = !line[..m.Index].TrimEnd().EndsWith('|') || span.Contains('…');
                // "<IDX folder>" is one placeholder value; "[--vae <folder>]" an optional part.
                var words = Tokens(Placeholder().Replace(span.Replace("[", "").Replace("]", ""), "X")).Where(w => w != "…").ToArray();
                if (words.Length < 2 || !Verbs.Contains(words[0])) continue;
                fragment |= !words.Any(w => w.StartsWith("--", StringComparison.Ordinal)); // `bench soak` names a verb
                var errors = ParseErrors(words).Where(e => !fragment || e.StartsWith("Unrecognized", StringComparison.Ordinal)).ToList();
                if (errors.Count > 0) failures.Add($"`{span}`: {errors[0]}");
            }
        Assert.True(failures.Count == 0, $"{document}:\n  " + string.Join("\n  ", failures));
    }

    [GeneratedRegex("<[^<>]+>")]
    private static partial Regex Placeholder();

    [GeneratedRegex("(?<!`)`([^`\n]+)`(?!`)")]
    private static partial Regex InlineCode();

    /// <summary>Every setting in appsettings.json has a row in the configuration table of docs/configuration.md (the README's
    /// until issue 21; Training:ActivationTimeout had none); Serilog's own keys and ASP.NET's AllowedHosts are documented
    /// by their owners.</summary>
    [Fact]
    public void Every_setting_is_in_the_configuration_table()
    {
        var table = File.ReadAllText(Path.Combine(RepositoryPaths.Root, ConfigurationPage));
        var settings = System.Text.Json.JsonDocument.Parse(
            File.ReadAllText(Path.Combine(RepositoryPaths.Root, "src/DiTServer.Api/appsettings.json"))).RootElement;
        var missing = settings.EnumerateObject().Where(section => section.Name is not ("Serilog" or "AllowedHosts" or "Logging"))
            .SelectMany(section => section.Value.EnumerateObject().Select(key => $"{section.Name}:{key.Name}"))
            .Where(key => !table.Contains($"`{key}`", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, $"{ConfigurationPage}'s table lacks: " + string.Join(", ", missing));
    }

    private const string ConfigurationPage = "docs/configuration.md";

    [Fact]
    public void Markers_sit_only_on_blocks_with_commands()
    {
        // A marker left behind when its commands were removed (or a typo in the invocation) would test nothing.
        foreach (var document in DocumentFiles())
            foreach (var block in Blocks(File.ReadAllText(Path.Combine(RepositoryPaths.Root, document))).Where(b => b.Marker is not null))
                Assert.True(block.Lines.Any(l => Invocation(l) is not null), $"{document}:{block.Line}: marker on a block without CLI commands");
    }

    private sealed record Block(int Line, string? Marker, List<string> Lines);

    /// <summary>Fenced blocks with the marker on the line before each, and their logical lines (\-continuations joined).</summary>
    private static List<Block> Blocks(string markdown)
    {
        var lines = markdown.Replace("\r\n", "\n").Split('\n');
        var blocks = new List<Block>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (!lines[i].TrimStart().StartsWith("```", StringComparison.Ordinal)) continue;
            string? marker = i > 0 && lines[i - 1].TrimStart().StartsWith(MarkerPrefix, StringComparison.Ordinal) ? lines[i - 1].Trim() : null;
            var body = new List<string>();
            var current = new StringBuilder();
            int start = i + 1;
            for (i++; i < lines.Length && !lines[i].TrimStart().StartsWith("```", StringComparison.Ordinal); i++)
            {
                var line = lines[i];
                if (line.EndsWith('\\')) { current.Append(line[..^1]).Append(' '); continue; }
                current.Append(line);
                body.Add(current.ToString());
                current.Clear();
            }
            blocks.Add(new Block(start, marker, body));
        }
        return blocks;
    }

    private static (string Mode, Dictionary<string, string[]> Overrides) ParseMarker(string marker)
    {
        var text = marker[MarkerPrefix.Length..^"-->".Length].Trim();
        var mode = text.Split(' ', 2)[0];
        Assert.True(mode is "run" or "parse", $"unknown marker mode '{mode}' in {marker}");
        var overrides = new Dictionary<string, string[]>();
        // After "parse" comes the reason in words; after "run", the overrides.
        var rest = mode == "run" && text.Length > mode.Length ? text[mode.Length..] : "";
        foreach (var part in rest.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var (verb, options) = (part.Split(':', 2)[0].Trim(), part.Split(':', 2)[1]);
            overrides[verb] = Tokens(options).ToArray();
        }
        return (mode, overrides);
    }

    /// <summary>The verb and its arguments when the line invokes a CLI (the server's: dotnet run --project
    /// src/DiTServer.Api … --, or its DLL; the benchmarks': tools/DiTServer.Bench, its DLL, or $B), else null.</summary>
    private static string[]? Invocation(string line)
    {
        var tokens = Tokens(line).ToList();
        int start = -1;
        bool bench = false;
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i] == "$B") { start = i + 1; bench = true; break; }
            if (i > 0 && tokens[i - 1] == "dotnet" && tokens[i].EndsWith("DiTServer.Api.dll", StringComparison.Ordinal)) { start = i + 1; break; }
            if (i > 0 && tokens[i - 1] == "dotnet" && tokens[i].EndsWith("DiTServer.Bench.dll", StringComparison.Ordinal))
            {
                start = i + 1; bench = true; break;
            }
            if (tokens[i] == "--" && tokens.Take(i).Contains("src/DiTServer.Api")) { start = i + 1; break; }
            if (tokens[i] == "--" && tokens.Take(i).Contains("tools/DiTServer.Bench")) { start = i + 1; bench = true; break; }
        }
        if (start < 0 || start >= tokens.Count) return null;
        var args = tokens.Skip(start).ToArray();
        if (bench) return args[0] == "bench" ? args : ["bench", .. args]; // the bench program's leading "bench" is optional
        if (args[0] == "bench") return [ServerBench, .. args[1..]]; // a command written for the server's former bench verb
        return Verbs.Contains(args[0]) ? args : null;
    }

    /// <summary>Parse errors of a command against the program that runs it: "bench …" is the benchmark program's
    /// (the server's own CLI refuses it), everything else the server's.</summary>
    private static IReadOnlyList<string> ParseErrors(string[] args) =>
        args[0] == ServerBench ? [CommandLine.BenchMoved]
        : args[0] == "bench"
            ? BenchProgram.Root(TextWriter.Null, TextWriter.Null).Parse(BenchProgram.Verb(args)).Errors.Select(e => e.Message).ToList()
            : CommandLine.Root(TextWriter.Null, TextWriter.Null).Parse(args).Errors.Select(e => e.Message).ToList();

    private const string ServerBench = "(server) bench";

    private static readonly string[] Verbs = ["sample", "bench", "train", "export", "eval", "models"];

    /// <summary>Shell words: quotes group, a # outside quotes starts a comment, placeholders are expanded.</summary>
    private static IEnumerable<string> Tokens(string line)
    {
        var word = new StringBuilder();
        bool any = false;
        char quote = '\0';
        foreach (var c in line)
        {
            if (quote != '\0') { if (c == quote) quote = '\0'; else word.Append(c); continue; }
            if (c is '"' or '\'') { quote = c; any = true; continue; }
            if (c == '#' && word.Length == 0 && !any) break;
            if (char.IsWhiteSpace(c)) { if (any || word.Length > 0) yield return word.ToString(); word.Clear(); any = false; continue; }
            word.Append(c);
        }
        if (any || word.Length > 0) yield return word.ToString();
    }

    private string Expand(string value)
    {
        if (value.Contains("{idx28}")) EnsureIdx();
        return value.Replace("{tmp}", tmp).Replace("{idx28}", Path.Combine(tmp, "idx28")).Replace("{fixtures}", FixturePaths.Root)
            .Replace("../shared/fixtures", FixturePaths.Root);
    }

    private void EnsureIdx()
    {
        var folder = Path.Combine(tmp, "idx28");
        if (Directory.Exists(folder)) return;
        SyntheticIdx.Write(folder, count: 40, side: 28, classes: 10);
        SyntheticIdx.Write(folder, count: 20, side: 28, classes: 10, seed: 2, prefix: "t10k");
    }

    /// <summary>Replaces each overridden option's value (or adds the option); the documented command keeps the rest.</summary>
    private string[] Override(string[] args, string[] overrides)
    {
        var result = args.Select(Expand).ToList();
        for (int i = 0; i < overrides.Length; i++)
        {
            var option = overrides[i];
            var values = new List<string>();
            while (i + 1 < overrides.Length && !overrides[i + 1].StartsWith("--", StringComparison.Ordinal)) values.Add(Expand(overrides[++i]));
            int at = result.IndexOf(option);
            if (at < 0) { result.Add(option); result.AddRange(values); continue; }
            int end = at + 1;
            while (end < result.Count && !result[end].StartsWith("--", StringComparison.Ordinal)) end++;
            result.RemoveRange(at + 1, end - at - 1);
            result.InsertRange(at + 1, values);
        }
        return result.ToArray();
    }

    /// <summary>Runs in the repository's folder, as a user who copied the command would; restores the torch thread
    /// count that <c>--threads</c> sets process-wide.</summary>
    private static async Task<int> RunInRepository(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var folder = Directory.GetCurrentDirectory();
        int threads = TorchSharp.torch.get_num_threads();
        Directory.SetCurrentDirectory(RepositoryPaths.Root);
        try { return args[0] == "bench" ? await BenchProgram.RunAsync(args, stdout, stderr) : await CommandLine.RunAsync(args, stdout, stderr); }
        finally
        {
            Directory.SetCurrentDirectory(folder);
            TorchSharp.torch.set_num_threads(threads);
        }
    }
}
