using System.Reflection;

namespace DiTServer.Core.Model;

/// <summary>Names of a model's classes; each class has a display name and optional aliases.</summary>
/// <remarks>File format: line i+1 is class i, aliases separated by commas ("tench, Tinca tinca").</remarks>
public sealed class ClassNames
{
    private readonly string[][] aliases;
    private readonly Dictionary<string, int> byName = new(StringComparer.OrdinalIgnoreCase);

    public ClassNames(IReadOnlyList<string> lines)
    {
        aliases = lines.Select(l => l.Split(',').Select(a => a.Trim()).Where(a => a.Length > 0).ToArray()).ToArray();
        for (int i = 0; i < aliases.Length; i++)
            foreach (var alias in aliases[i])
                byName.TryAdd(alias, i); // the first class that uses a name keeps it ("crane" is both a bird and a machine)
    }

    public int Count => aliases.Length;

    /// <summary>The display name (first alias) of class i, or its number when the class has no name.</summary>
    public string this[int index] => index >= 0 && index < aliases.Length && aliases[index].Length > 0 ? aliases[index][0] : index.ToString();

    public IReadOnlyList<string> Aliases(int index) => aliases[index];

    /// <summary>ImageNet-1k names, for 1000-class models without their own list.</summary>
    public static ClassNames ImageNet { get; } = LoadImageNet();

    public static ClassNames FromFile(string path) => new(File.ReadAllLines(path).Where(l => l.Length > 0).ToArray());

    /// <summary>Generic names "0", "1", … for models without names.</summary>
    public static ClassNames Numbered(int count) => new(Enumerable.Range(0, count).Select(i => i.ToString()).ToArray());

    /// <summary>Resolves "207", "golden retriever" or any alias (case-insensitive) to a class index in 0..count−1.</summary>
    public bool TryResolve(string label, int numClasses, out int index, out string error)
    {
        label = label.Trim();
        if (int.TryParse(label, out index))
        {
            error = index >= 0 && index < numClasses ? "" : $"class index {index} is out of range 0..{numClasses - 1}";
            return error.Length == 0;
        }
        if (byName.TryGetValue(label, out index) && index < numClasses) { error = ""; return true; }
        var close = Suggest(label, 3);
        error = $"unknown class '{label}'" + (close.Count > 0 ? $"; did you mean {string.Join(", ", close.Select(c => $"'{c}'"))}?" : "");
        index = -1;
        return false;
    }

    /// <summary>The names closest to <paramref name="label"/>: substring matches first, then by edit distance.</summary>
    public IReadOnlyList<string> Suggest(string label, int max)
    {
        var lower = label.ToLowerInvariant();
        return byName.Keys
            .Select(name => (name, score: name.Contains(lower, StringComparison.OrdinalIgnoreCase) ? 0 : 1 + EditDistance(lower, name.ToLowerInvariant())))
            .Where(x => x.score <= Math.Max(3, lower.Length / 3))
            .OrderBy(x => x.score).ThenBy(x => x.name.Length)
            .Take(max).Select(x => x.name).ToList();
    }

    private static int EditDistance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) prev[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }

    private static ClassNames LoadImageNet()
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("DiTServer.Core.imagenet-1k-classes.txt")
            ?? throw new InvalidOperationException("embedded ImageNet class list is missing from the build");
        using var reader = new StreamReader(stream);
        var lines = new List<string>();
        while (reader.ReadLine() is { } line) if (line.Length > 0) lines.Add(line);
        return new ClassNames(lines);
    }
}
