using System.Globalization;

namespace Kiln.Training.Reporting;

/// <summary>
/// metrics.csv of a run, one row per step, appended and flushed as training goes. Reopening for a resumed run drops
/// rows past the checkpoint's step (steps that will be trained again), so the file describes one run.
/// </summary>
public sealed class MetricsLog : IDisposable
{
    public const string Header = "step,train_loss,val_loss,learning_rate,grad_norm,tokens_per_second,elapsed_seconds";
    private readonly List<MetricsRow> _rows = [];
    private readonly StreamWriter _writer;

    private MetricsLog(string path, IEnumerable<MetricsRow> kept)
    {
        _rows.AddRange(kept);
        _writer = new StreamWriter(path, append: false) { AutoFlush = true };
        _writer.WriteLine(Header);
        foreach (var r in _rows)
            _writer.WriteLine(Format(r));
    }

    public IReadOnlyList<MetricsRow> Rows => _rows;

    /// <summary>Opens path, keeping existing rows up to <paramref name="keepThroughStep"/> (0 starts afresh).</summary>
    public static MetricsLog Open(string path, long keepThroughStep)
    {
        var kept = new List<MetricsRow>();
        if (keepThroughStep > 0 && File.Exists(path))
        {
            foreach (string line in File.ReadLines(path).Skip(1))
            {
                if (TryParse(line, out var row) && row.Step <= keepThroughStep)
                    kept.Add(row);
            }
        }
        return new MetricsLog(path, kept);
    }

    public void Add(MetricsRow row)
    {
        _rows.Add(row);
        _writer.WriteLine(Format(row));
    }

    private static string Format(MetricsRow r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Step},{r.TrainLoss:R},{(double.IsNaN(r.ValidationLoss) ? "" : r.ValidationLoss.ToString("R", CultureInfo.InvariantCulture))},{r.LearningRate:R},{r.GradientNorm:R},{r.TokensPerSecond:F1},{r.ElapsedSeconds:F3}");

    private static bool TryParse(string line, out MetricsRow row)
    {
        row = default;
        string[] f = line.Split(',');
        if (f.Length != 7)
            return false;
        var inv = CultureInfo.InvariantCulture;
        if (!long.TryParse(f[0], inv, out long step) || !double.TryParse(f[1], inv, out double loss)
            || !float.TryParse(f[3], inv, out float lr) || !double.TryParse(f[4], inv, out double norm)
            || !double.TryParse(f[5], inv, out double tps) || !double.TryParse(f[6], inv, out double elapsed))
            return false;
        double val = f[2].Length == 0 ? double.NaN : double.TryParse(f[2], inv, out double v) ? v : double.NaN;
        row = new MetricsRow(step, loss, val, lr, norm, tps, elapsed);
        return true;
    }

    public void Dispose() => _writer.Dispose();
}
