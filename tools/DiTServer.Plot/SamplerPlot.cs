using System.Globalization;

/// <summary>docs/samplers.csv → one PNG with two panels side by side: FID (lower is better) and classifier accuracy on
/// generated samples (higher is better) against model calls per image, one line per sampler family. A CSV with 95%
/// intervals (<c>tools/sampler-study.sh csv-ci</c>: <c>seed_set</c>, <c>fid_low</c>, <c>fid_high</c>, …) gives its pooled
/// rows, a vertical bar per interval, and two more panels: precision and recall.</summary>
internal static class SamplerPlot
{
    public static int Write(string csvPath, string pngPath)
    {
        var lines = File.ReadAllLines(csvPath).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        var header = lines[0].Split(',').Select((name, i) => (name, i)).ToDictionary(p => p.name, p => p.i);
        bool intervals = header.ContainsKey("seed_set");
        // With intervals: each setting's pooled row, or its only row when it was judged on one seed set.
        var rows = lines.Skip(1).Select(l => l.Split(',')).GroupBy(r => r[0])
            .SelectMany(g => !intervals ? g : g.Where(r => r[header["seed_set"]] == "pooled").DefaultIfEmpty(g.Last()))
            .ToList();
        double D(string[] r, string column) => double.Parse(r[header[column]], CultureInfo.InvariantCulture);
        string S(string[] r, string column) => header.TryGetValue(column, out int i) ? r[i] : "";
        // Extras (guidance interval, thresholding) are single points of their own; cached settings are a line per sampler
        // and cache mode over their block passes (cache_interval 5 … 2), beside the uncached point.
        string Series(string[] r) => S(r, "cache_mode") is { Length: > 0 } mode ? $"{S(r, "sampler")} + cache {mode}"
            : S(r, "extra") is { Length: > 0 } extra ? $"{S(r, "sampler")} {S(r, "spacing")} + {extra}"
            : S(r, "spacing") is { Length: > 0 } spacing ? $"{S(r, "sampler")} {spacing}" : S(r, "sampler");
        // Cost on the x axis: model calls, or where caching skips the blocks, the calls that ran them.
        string calls = header.ContainsKey("block_passes") ? "block_passes" : "model_calls";

        var panels = new List<(string, string)>
        {
            ("fid", "FID on CNN features (lower is better)"), ("accuracy", "classifier accuracy on samples (higher is better)"),
        };
        if (intervals) panels.AddRange([("precision", "precision, k = 3 (higher is better)"), ("recall", "recall, k = 3 (higher is better)")]);
        var plots = new List<ScottPlot.Plot>();
        foreach (var (column, label) in panels)
        {
            var plot = new ScottPlot.Plot();
            foreach (var group in rows.GroupBy(Series))
            {
                var points = group.OrderBy(r => D(r, calls)).ToList();
                // log10 of the calls, labelled with the calls themselves below: 5 and 250 calls on one readable axis.
                var scatter = plot.Add.Scatter(points.Select(r => Math.Log10(D(r, calls))).ToArray(), points.Select(r => D(r, column)).ToArray());
                scatter.LegendText = group.Key;
                scatter.LineWidth = 2;
                scatter.MarkerSize = 7;
                if (intervals)
                    foreach (var r in points)
                    {
                        double x = Math.Log10(D(r, calls));
                        var bar = plot.Add.Line(x, D(r, column + "_low"), x, D(r, column + "_high"));
                        bar.Color = scatter.Color;
                        bar.LineWidth = 2;
                    }
            }
            plot.Axes.Bottom.Label.Text = calls == "block_passes" ? "passes through the transformer blocks per image (log scale)"
                : "model calls per image (steps; log scale)";
            plot.Axes.Left.Label.Text = label;
            double[] ticks = calls == "block_passes" ? [5, 10, 13, 17, 25, 50, 250] : [5, 8, 10, 15, 20, 50, 250];
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.Select(v => Math.Log10(v)).ToArray(),
                ticks.Select(v => v.ToString(CultureInfo.InvariantCulture)).ToArray());
            plot.ShowLegend(column == "accuracy" || column == "precision" ? ScottPlot.Alignment.LowerRight : ScottPlot.Alignment.UpperRight);
            plots.Add(plot);
        }
        const int w = 760, h = 560;
        int columns = Math.Min(plots.Count, 2), gridRows = (plots.Count + 1) / 2;
        using var surface = SkiaSharp.SKSurface.Create(new SkiaSharp.SKImageInfo(columns * w, gridRows * h));
        for (int i = 0; i < plots.Count; i++)
        {
            using var image = SkiaSharp.SKImage.FromEncodedData(plots[i].GetImageBytes(w, h, ScottPlot.ImageFormat.Png));
            surface.Canvas.DrawImage(image, i % 2 * w, i / 2 * h);
        }
        using var snapshot = surface.Snapshot();
        using var data = snapshot.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(pngPath, data.ToArray());
        Console.WriteLine($"wrote {pngPath}");
        return 0;
    }
}
