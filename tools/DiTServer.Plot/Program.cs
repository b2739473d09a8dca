using System.Globalization;

// dotnet run --project tools/DiTServer.Plot -- <bench-load.csv> <out.png> [title]
// Latency (p50 solid, p95 dashed) against offered load, one colour per batching mode.
// dotnet run --project tools/DiTServer.Plot -- --samplers <samplers.csv> <out.png>
// Quality (FID and generated accuracy) against model calls per image, one series per sampler and spacing.
// dotnet run --project tools/DiTServer.Plot -- --tiles <out.png> <columns> "caption=image.png" …
// Small images side by side, scaled up pixel for pixel, each with its caption (an empty path leaves a blank tile).
if (args.Length >= 3 && args[0] == "--samplers") return SamplerPlot.Write(args[1], args[2]);
if (args.Length >= 4 && args[0] == "--tiles" && int.TryParse(args[2], out int columns) && columns > 0)
    return TileFigure.Write(args[1], columns, args[3..]);
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: DiTServer.Plot <bench-load.csv> <out.png> [title] | --samplers <samplers.csv> <out.png> | " +
        "--tiles <out.png> <columns> caption=image.png …");
    return 2;
}
var rows = File.ReadAllLines(args[0]).Skip(1).Where(l => l.Length > 0).Select(l => l.Split(',')).ToList();
double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);
var plot = new ScottPlot.Plot();
var colours = new Dictionary<string, ScottPlot.Color> { ["step"] = ScottPlot.Colors.Blue, ["request"] = ScottPlot.Colors.OrangeRed };
foreach (var group in rows.GroupBy(r => r[1]))
{
    var points = group.OrderBy(r => D(r[0])).ToList();
    var x = points.Select(r => D(r[0])).ToArray();
    var colour = colours.GetValueOrDefault(group.Key, ScottPlot.Colors.Gray);
    var p50 = plot.Add.Scatter(x, points.Select(r => D(r[3]) / 1000).ToArray());
    p50.LegendText = $"{group.Key} batching, p50";
    p50.Color = colour;
    p50.LineWidth = 2;
    var p95 = plot.Add.Scatter(x, points.Select(r => D(r[4]) / 1000).ToArray());
    p95.LegendText = $"{group.Key} batching, p95";
    p95.Color = colour;
    p95.LinePattern = ScottPlot.LinePattern.Dashed;
}
plot.Title(args.Length > 2 ? args[2] : "Latency vs offered load");
plot.XLabel("offered load (requests/s, Poisson arrivals)");
plot.YLabel("latency, enqueue → PNG (s)");
plot.ShowLegend(ScottPlot.Alignment.UpperLeft);
plot.SavePng(args[1], 900, 560);
Console.WriteLine($"wrote {args[1]}");
return 0;
