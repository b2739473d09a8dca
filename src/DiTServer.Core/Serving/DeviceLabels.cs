namespace DiTServer.Core.Serving;

/// <summary>Names for the devices of one process, distinct even when a device is listed twice (metrics' <c>device</c>
/// label, logs, thread names): <c>cpu</c>, <c>cpu</c> → <c>cpu:0</c>, <c>cpu:1</c>; <c>cuda:1</c> stays <c>cuda:1</c>;
/// <c>cuda</c> is <c>cuda:0</c>, and <c>cuda:0</c> listed twice → <c>cuda:0</c>, <c>cuda:0#2</c> (the CPU has no index,
/// so its engines are numbered).</summary>
public static class DeviceLabels
{
    public static IReadOnlyList<string> Of(IReadOnlyList<string> devices)
    {
        var used = new HashSet<string>();
        var next = new Dictionary<string, int>();
        var labels = new List<string>(devices.Count);
        foreach (var d in devices)
        {
            var text = d.Trim().ToLowerInvariant();
            if (text == "cuda") text = "cuda:0";
            string label;
            if (text.Contains(':')) label = text;
            else
            {
                int i = next.GetValueOrDefault(text);
                while (used.Contains($"{text}:{i}")) i++;
                label = $"{text}:{i}";
                next[text] = i + 1;
            }
            for (int n = 2; !used.Add(label); n++) label = $"{text}#{n}";
            labels.Add(label);
        }
        return labels;
    }
}
