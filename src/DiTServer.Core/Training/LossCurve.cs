using System.Globalization;
using System.Text;

namespace DiTServer.Core.Training;

/// <summary>Draws the loss curve of a run's loss.csv as a standalone SVG (log-scale loss against step).</summary>
/// <remarks>Kept by hand rather than ScottPlot (which draws the other plots, in tools/DiTServer.Plot): ScottPlot 5 needs
/// SkiaSharp 3.x, while TorchSharp in this assembly pulls SkiaSharp 2.88, and the two native libraries cannot share a
/// process. This plot is a polyline and two axes, written during training by the server and the CLI alike.</remarks>
public static class LossCurve
{
    /// <summary>Rows (step, loss) of a loss.csv written by <see cref="TrainingSession"/>.</summary>
    public static IReadOnlyList<(long Step, double Loss)> Read(string csvPath) =>
        File.ReadLines(csvPath).Skip(1).Select(l => l.Split(','))
            .Where(f => f.Length >= 2)
            .Select(f => (long.Parse(f[0], CultureInfo.InvariantCulture), double.Parse(f[1], CultureInfo.InvariantCulture)))
            .ToList();

    public static string Svg(IReadOnlyList<(long Step, double Loss)> rows, string title, int width = 720, int height = 360)
    {
        if (rows.Count == 0) throw new ArgumentException("no loss rows to plot");
        const int left = 64, right = 16, top = 32, bottom = 44;
        double plotW = width - left - right, plotH = height - top - bottom;
        long maxStep = Math.Max(1, rows.Max(r => r.Step));
        double lo = Math.Log10(rows.Min(r => r.Loss)), hi = Math.Log10(rows.Max(r => r.Loss));
        lo = Math.Floor(lo * 10) / 10; hi = Math.Ceiling(hi * 10) / 10;
        if (hi - lo < 0.1) hi = lo + 0.1;
        string X(long s) => (left + plotW * s / maxStep).ToString("F1", CultureInfo.InvariantCulture);
        string Y(double loss) => (top + plotH * (hi - Math.Log10(loss)) / (hi - lo)).ToString("F1", CultureInfo.InvariantCulture);

        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture,
            $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        svg.Append(CultureInfo.InvariantCulture,
            $"<text x=\"{width / 2}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{System.Security.SecurityElement.Escape(title)}</text>\n");
        // Horizontal grid at "nice" loss values inside the range.
        foreach (double v in new[] { 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 2, 3, 5 })
        {
            double lv = Math.Log10(v);
            if (lv < lo || lv > hi) continue;
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" x2=\"{width - right}\" y1=\"{Y(v)}\" y2=\"{Y(v)}\" stroke=\"#ddd\"/>");
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left - 6}\" y=\"{Y(v)}\" text-anchor=\"end\" dy=\"4\">{v}</text>\n");
        }
        for (int i = 0; i <= 5; i++)
        {
            long s = maxStep * i / 5;
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(s)}\" y=\"{height - bottom + 16}\" text-anchor=\"middle\">{s}</text>\n");
        }
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left + plotW / 2}\" y=\"{height - 8}\" text-anchor=\"middle\">step</text>\n");
        svg.Append(CultureInfo.InvariantCulture,
            $"<text transform=\"translate(16 {top + plotH / 2}) rotate(-90)\" text-anchor=\"middle\">loss (mse + vb), log scale</text>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{left}\" y=\"{top}\" width=\"{plotW}\" height=\"{plotH}\" fill=\"none\" stroke=\"#444\"/>\n");
        svg.Append("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
        svg.AppendJoin(' ', rows.Select(r => $"{X(r.Step)},{Y(r.Loss)}"));
        svg.Append("\"/>\n</svg>\n");
        return svg.ToString();
    }
}
