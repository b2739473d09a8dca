using System.CommandLine;
using System.Globalization;
using DiTServer.Api.Cli;

namespace DiTServer.Bench;

/// <summary>Comma-separated list options ("2,4,8"), parsed by System.CommandLine through a custom parser: a bad item
/// is a parse error that names the option, printed as one line with exit 2 before any model is loaded.</summary>
internal static class ListOption
{
    /// <param name="parseItem">One item; throws <see cref="UsageException"/> with the message to show.</param>
    /// <param name="allowEmpty">An empty list is a value (e.g. "skip this part") rather than a mistake.</param>
    public static Option<T[]> Create<T>(string name, string description, string defaultText, Func<string, T> parseItem, bool allowEmpty = false) =>
        new(name)
        {
            Description = $"{description}, comma-separated",
            DefaultValueFactory = _ => Split(defaultText).Select(parseItem).ToArray(),
            CustomParser = result =>
            {
                try
                {
                    var items = result.Tokens.SelectMany(t => Split(t.Value)).Select(parseItem).ToArray();
                    return items.Length > 0 || allowEmpty ? items : throw new UsageException($"{name} is empty");
                }
                catch (UsageException e)
                {
                    result.AddError(e.Message);
                    return [];
                }
            },
        };

    /// <summary>A list without a default: null when the option is absent.</summary>
    public static Option<T[]?> Optional<T>(string name, string description, Func<string, T> parseItem)
    {
        var list = Create(name, description, "", parseItem);
        return new Option<T[]?>(name) { Description = list.Description, CustomParser = result => list.CustomParser!(result) };
    }

    /// <summary>Batch sizes: positive integers.</summary>
    public static int BatchSize(string s) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var b) && b > 0 ? b : throw new UsageException($"bad batch size '{s}'");

    /// <summary>A finite number in [min, max], for the option <paramref name="name"/>.</summary>
    public static Func<string, double> Number(string name, double min, double max) => s =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v)
            ? v >= min && v <= max ? v
                : throw new UsageException(
                    $"{name}: {s} is outside {min.ToString(CultureInfo.InvariantCulture)}..{max.ToString(CultureInfo.InvariantCulture)}")
            : throw new UsageException($"{name}: '{s}' is not a number (expected a comma-separated list such as 2,4,8)");

    private static string[] Split(string text) => text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
}
