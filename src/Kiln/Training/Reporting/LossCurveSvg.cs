using System.Globalization;
using System.Text;

namespace Kiln.Training.Reporting;

/// <summary>A self-contained SVG line chart of training and validation loss against step (no plotting library).</summary>
public static class LossCurveSvg
{
    private const int Width = 800, Height = 450, Left = 70, Right = 20, Top = 30, Bottom = 50;

    public static string Render(IReadOnlyList<MetricsRow> rows, string title = "loss")
    {
        var train = rows.Where(r => double.IsFinite(r.TrainLoss)).Select(r => (r.Step, Loss: r.TrainLoss)).ToList();
        var val = rows.Where(r => double.IsFinite(r.ValidationLoss)).Select(r => (r.Step, Loss: r.ValidationLoss)).ToList();
        var all = train.Concat(val).ToList();
        long minStep = all.Count == 0 ? 0 : all.Min(p => p.Step), maxStep = all.Count == 0 ? 1 : all.Max(p => p.Step);
        if (maxStep == minStep)
            maxStep = minStep + 1;
        double minLoss = all.Count == 0 ? 0 : all.Min(p => p.Loss), maxLoss = all.Count == 0 ? 1 : all.Max(p => p.Loss);
        if (maxLoss - minLoss < 1e-9)
            (minLoss, maxLoss) = (minLoss - 0.5, maxLoss + 0.5);
        double pad = (maxLoss - minLoss) * 0.05;
        (minLoss, maxLoss) = (Math.Max(0, minLoss - pad), maxLoss + pad);

        double X(long step) => Left + (double)(step - minStep) / (maxStep - minStep) * (Width - Left - Right);
        double Y(double loss) => Top + (maxLoss - loss) / (maxLoss - minLoss) * (Height - Top - Bottom);
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append(inv, $"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>\n");
        sb.Append(inv, $"<text x=\"{Width / 2}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">{Escape(title)}</text>\n");
        for (int i = 0; i <= 5; i++)
        {
            double loss = minLoss + (maxLoss - minLoss) * i / 5;
            double y = Y(loss);
            sb.Append(inv, $"<line x1=\"{Left}\" y1=\"{y:F1}\" x2=\"{Width - Right}\" y2=\"{y:F1}\" stroke=\"#e0e0e0\"/>");
            sb.Append(inv, $"<text x=\"{Left - 6}\" y=\"{y + 4:F1}\" text-anchor=\"end\">{loss:F3}</text>\n");
            long step = minStep + (maxStep - minStep) * i / 5;
            double x = X(step);
            sb.Append(inv, $"<line x1=\"{x:F1}\" y1=\"{Height - Bottom}\" x2=\"{x:F1}\" y2=\"{Height - Bottom + 5}\" stroke=\"black\"/>");
            sb.Append(inv, $"<text x=\"{x:F1}\" y=\"{Height - Bottom + 18}\" text-anchor=\"middle\">{step}</text>\n");
        }
        sb.Append(inv, $"<polyline fill=\"none\" stroke=\"black\" points=\"{Left},{Top} {Left},{Height - Bottom} {Width - Right},{Height - Bottom}\"/>\n");
        sb.Append(inv, $"<text x=\"{Width / 2}\" y=\"{Height - 10}\" text-anchor=\"middle\">step</text>\n");
        Series(sb, train, X, Y, "#1f77b4", "train");
        Series(sb, val, X, Y, "#d62728", "validation");
        sb.Append(inv, $"<text x=\"{Width - Right - 120}\" y=\"{Top + 15}\" fill=\"#1f77b4\">— train</text>\n");
        if (val.Count > 0)
            sb.Append(inv, $"<text x=\"{Width - Right - 120}\" y=\"{Top + 32}\" fill=\"#d62728\">— validation</text>\n");
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    private static void Series(StringBuilder sb, List<(long Step, double Loss)> points, Func<long, double> x, Func<double, double> y, string color, string name)
    {
        if (points.Count == 0)
            return;
        sb.Append(CultureInfo.InvariantCulture, $"<polyline class=\"{name}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"");
        foreach (var (step, loss) in points)
            sb.Append(CultureInfo.InvariantCulture, $"{x(step):F1},{y(loss):F1} ");
        sb.Append("\"/>\n");
    }

    private static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
}
