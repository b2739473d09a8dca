using Spectre.Console;
using System.CommandLine;
using System.Text.Json.Nodes;
using DiTServer.Core.Checkpoints;

namespace DiTServer.Api.Cli;

/// <summary><c>models pull &lt;name&gt;</c>: downloads released weights from their official URLs with resume, a progress
/// line and SHA-256 verification, and writes a ready folder (model.json for DiT weights, a diffusers folder for VAEs).</summary>
/// <remarks>The catalogue records no checksums: their published values could not be retrieved from the network this
/// was built on, and a guessed checksum would defeat the check. Each file therefore needs <c>--sha256 FILE=HEX</c>
/// from the publisher's page (Hugging Face shows it per file); without it the verb refuses to download.</remarks>
public static class ModelsCommand
{
    /// <summary>One downloadable entry: files relative to a base URL, and the model.json to write (DiT weights only).</summary>
    public sealed record CatalogEntry(string Name, string Folder, string BaseUrl, IReadOnlyList<string> Files, JsonObject? Manifest);

    public static IReadOnlyList<CatalogEntry> Catalog { get; } =
    [
        new("DiT-XL/2-256", "dit-xl-2-256", "https://dl.fbaipublicfiles.com/DiT/models/", ["DiT-XL-2-256x256.pt"],
            new JsonObject { ["architecture"] = "DiT-XL/2", ["input_size"] = 32, ["in_channels"] = 4, ["num_classes"] = 1000, ["learn_sigma"] = true,
                ["weights"] = "DiT-XL-2-256x256.pt", ["vae"] = "../sd-vae-ft-mse" }),
        new("DiT-XL/2-512", "dit-xl-2-512", "https://dl.fbaipublicfiles.com/DiT/models/", ["DiT-XL-2-512x512.pt"],
            new JsonObject { ["architecture"] = "DiT-XL/2", ["input_size"] = 64, ["in_channels"] = 4, ["num_classes"] = 1000, ["learn_sigma"] = true,
                ["weights"] = "DiT-XL-2-512x512.pt", ["vae"] = "../sd-vae-ft-mse" }),
        new("sd-vae-ft-ema", "sd-vae-ft-ema", "https://huggingface.co/stabilityai/sd-vae-ft-ema/resolve/main/",
            ["config.json", "diffusion_pytorch_model.safetensors"], null),
        new("sd-vae-ft-mse", "sd-vae-ft-mse", "https://huggingface.co/stabilityai/sd-vae-ft-mse/resolve/main/",
            ["config.json", "diffusion_pytorch_model.safetensors"], null),
    ];

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var name = new Argument<string>("name") { Description = $"One of: {string.Join(", ", Catalog.Select(c => c.Name))}" };
        var output = new Option<string>("--out") { Description = "Folder that receives the model folder", DefaultValueFactory = _ => "models" };
        var sha = new Option<string[]>("--sha256") { Description = "FILE=HEX, the published SHA-256 of each file (repeat per file)",
            AllowMultipleArgumentsPerToken = true };
        var baseUrl = new Option<string?>("--base-url") { Description = "Download from this mirror instead of the official URL (same file names)" };
        var attempts = new Option<int>("--attempts") { Description = "Connection attempts per file (each resumes the last)", DefaultValueFactory = _ => 5 };
        var retryDelay = new Option<double>("--retry-delay") { Description = "Seconds before the first retry; each later one waits about twice as long",
            DefaultValueFactory = _ => 1.0 };

        var pull = new Command("pull", "Download released weights with resume and SHA-256 verification; write a ready model folder")
        {
            name, output, sha, baseUrl, attempts, retryDelay,
        };
        pull.SetAction((parse, cancel) => CommandLine.GuardAsync(stderr, async () =>
        {
            var entry = Catalog.FirstOrDefault(c => string.Equals(c.Name, parse.GetValue(name), StringComparison.OrdinalIgnoreCase))
                ?? throw new UsageException($"unknown model '{parse.GetValue(name)}'; known: {string.Join(", ", Catalog.Select(c => c.Name))}");
            var checksums = ParseChecksums(parse.GetValue(sha) ?? []);
            var missing = entry.Files.Where(f => !checksums.ContainsKey(f)).ToList();
            if (missing.Count > 0)
                throw new UsageException($"no SHA-256 for {string.Join(", ", missing)}: pass --sha256 {missing[0]}=<hex> with the value published for it");
            var unknown = checksums.Keys.Except(entry.Files).ToList();
            if (unknown.Count > 0) throw new UsageException($"--sha256 names {unknown[0]}, which {entry.Name} does not have");
            int tries = parse.GetValue(attempts);
            if (tries < 1) throw new UsageException("--attempts must be at least 1");
            double delay = parse.GetValue(retryDelay);
            if (!(delay >= 0) || delay > 600) throw new UsageException("--retry-delay must be in 0..600 seconds");
            string root = parse.GetValue(baseUrl) is { } mirror ? mirror.TrimEnd('/') + "/" : entry.BaseUrl;
            if (!Uri.TryCreate(root, UriKind.Absolute, out var rootUri) || rootUri.Scheme is not ("http" or "https"))
                throw new UsageException($"--base-url '{root}' is not an http(s) URL");

            string folder = Path.Combine(parse.GetValue(output)!, entry.Folder);
            var created = FoldersToCreate(folder);
            using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
            try
            {
                foreach (var file in entry.Files)
                {
                    var url = new Uri(rootUri, file);
                    string destination = Path.Combine(folder, file);
                    Task Download(IProgress<(long, long?)> progress) =>
                        WeightsDownload.DownloadAsync(http, url, destination, checksums[file], progress, tries, cancel, TimeSpan.FromSeconds(delay));
                    if (!Console.IsErrorRedirected && ReferenceEquals(stderr, Console.Error)) await WithProgressBar(file, Download);
                    else await Download(new ProgressLines(stderr, file));
                    stdout.WriteLine($"{destination}\tsha256 {checksums[file]} verified");
                }
            }
            catch
            {
                RemoveIfEmpty(created);
                throw;
            }
            if (entry.Manifest is { } manifest)
            {
                File.WriteAllText(Path.Combine(folder, "model.json"), manifest.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true })
                    + "\n");
                stdout.WriteLine($"{Path.Combine(folder, "model.json")}\twritten (uses ../sd-vae-ft-mse: pull it too)");
            }
            return CommandLine.ExitOk;
        }));
        return new Command("models", "Released weights") { pull };
    }

    /// <summary>The folders, innermost first, that writing into <paramref name="folder"/> will create.</summary>
    private static List<string> FoldersToCreate(string folder)
    {
        var missing = new List<string>();
        for (var dir = new DirectoryInfo(Path.GetFullPath(folder)); dir is not null && !dir.Exists; dir = dir.Parent) missing.Add(dir.FullName);
        return missing;
    }

    /// <summary>After a failed pull: removes the folders this pull created while they hold nothing, so a failure leaves
    /// no empty model folder behind. A folder that holds a <c>.partial</c> file stays: the next pull resumes it.</summary>
    private static void RemoveIfEmpty(List<string> created)
    {
        foreach (var dir in created)
        {
            if (!Directory.Exists(dir) || Directory.EnumerateFileSystemEntries(dir).Any()) return;
            Directory.Delete(dir);
        }
    }

    private static Dictionary<string, string> ParseChecksums(IEnumerable<string> values)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var v in values)
        {
            int eq = v.IndexOf('=');
            if (eq <= 0) throw new UsageException($"--sha256 '{v}' must be FILE=HEX");
            string hex = v[(eq + 1)..].Trim();
            if (hex.Length != 64 || !hex.All(Uri.IsHexDigit)) throw new UsageException($"--sha256 for {v[..eq]} must be 64 hex digits");
            result[v[..eq]] = hex.ToLowerInvariant();
        }
        return result;
    }

    /// <summary>On a terminal: Spectre's progress bar (bytes, speed, time left) on stderr.</summary>
    private static Task WithProgressBar(string file, Func<IProgress<(long, long?)>, Task> download) =>
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }).Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(),
                new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(ctx => download(new BarProgress(ctx.AddTask(file, maxValue: 1))));

    private sealed class BarProgress(ProgressTask task) : IProgress<(long Done, long? Total)>
    {
        public void Report((long Done, long? Total) value)
        {
            if (value.Total is { } total && total > 0) task.MaxValue = total;
            else if (value.Done > task.MaxValue) task.MaxValue = value.Done;
            task.Value = value.Done;
        }
    }

    /// <summary>Redirected (logs, CI, tests): a plain line every 10%, since a progress bar would only fill the log with
    /// redraws (Spectre draws nothing useful without a terminal, which is why this one stays).</summary>
    private sealed class ProgressLines(TextWriter stderr, string file) : IProgress<(long Done, long? Total)>
    {
        private int lastDecile = -1;

        public void Report((long Done, long? Total) value)
        {
            int decile = value.Total is { } t && t > 0 ? (int)(10 * value.Done / t) : -1;
            if (decile == lastDecile) return;
            lastDecile = decile;
            stderr.WriteLine(value.Total is { } total && total > 0
                ? $"{file}: {value.Done / 1e6:F1} / {total / 1e6:F1} MB ({100.0 * value.Done / total:F0}%)"
                : $"{file}: {value.Done / 1e6:F1} MB");
        }
    }
}
