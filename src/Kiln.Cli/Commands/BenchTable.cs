using System.Globalization;

namespace Kiln.Cli.Commands;

/// <summary>Renders a <see cref="BenchReport"/> as llama-bench's markdown tables.</summary>
internal static class BenchTable
{
    public static void Write(TextWriter o, BenchReport report)
    {
        if (report.Model is { } m && report.Tests.Count > 0)
        {
            var rows = new List<string[]> { new[] { "model", "type", "size", "params", "threads", "test", "t/s", "weights GB/s" } };
            foreach (var t in report.Tests)
            {
                string bandwidth = t.WeightBandwidthGbps is { } gbps
                    ? F(gbps) + (t.ReadBandwidthFraction is { } f ? $" ({f * 100:F0}%)" : "")
                    : "";
                rows.Add([m.Name, m.WeightType, $"{F(m.SizeGib)} GiB", Count(m.Parameters), I(report.Threads), t.Name,
                    $"{F(t.TokensPerSecond)} ± {F(t.TokensPerSecondStddev)}", bandwidth]);
            }
            bool[] rightAligned = [false, false, true, true, true, true, true, true];
            if (report.FlashAttention)
            {
                // llama-bench shows an fa column when flash attention is on
                for (int i = 0; i < rows.Count; i++)
                    rows[i] = [.. rows[i][..5], i == 0 ? "fa" : "1", .. rows[i][5..]];
                rightAligned = [.. rightAligned[..5], true, .. rightAligned[5..]];
            }
            Render(o, rows, rightAligned);
            if (report.Tests.Any(t => t.WeightBandwidthGbps is not null))
            {
                string share = report.Memory is null ? "" : "; in brackets, its share of the read bandwidth below";
                o.WriteLine();
                o.WriteLine($"weights GB/s: the {F(m.WeightBytesPerToken / 1048576.0)} MiB of weights each token reads × t/s{share}.");
            }
        }
        if (report.Memory is { } mem)
        {
            if (report.Model is not null)
                o.WriteLine();
            var rows = new List<string[]>
            {
                new[] { "memory", "threads", "buffer", "passes", "best GB/s", "median GB/s" },
                new[] { "read" + (mem.Quick ? " (quick)" : ""), I(mem.Threads), $"{F(mem.Bytes / 1073741824.0)} GiB", I(mem.Passes), F(mem.BestGbps), F(mem.MedianGbps) },
            };
            Render(o, rows, [false, true, true, true, true, true]);
        }
    }

    /// <summary>llama-bench's parameter count: 1.10 B, 494.03 M.</summary>
    private static string Count(long n) => n >= 1_000_000_000 ? $"{F(n / 1e9)} B" : n >= 1_000_000 ? $"{F(n / 1e6)} M" : $"{F(n / 1e3)} K";

    private static string F(double v) => v.ToString("F2", CultureInfo.InvariantCulture);

    private static string I(int v) => v.ToString(CultureInfo.InvariantCulture);

    private static void Render(TextWriter o, List<string[]> rows, bool[] rightAligned)
    {
        int columns = rows[0].Length;
        var width = new int[columns];
        foreach (var row in rows)
            for (int c = 0; c < columns; c++)
                width[c] = Math.Max(width[c], row[c].Length);
        for (int r = 0; r < rows.Count; r++)
        {
            o.WriteLine("| " + string.Join(" | ", rows[r].Select((cell, c) => rightAligned[c] ? cell.PadLeft(width[c]) : cell.PadRight(width[c]))) + " |");
            if (r == 0)
                o.WriteLine("| " + string.Join(" | ", width.Select((w, c) => rightAligned[c] ? new string('-', w - 1) + ":" : new string('-', w))) + " |");
        }
    }
}
