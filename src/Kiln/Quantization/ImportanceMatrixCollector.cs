using Kiln.Models.Llama;

namespace Kiln.Quantization;

/// <summary>
/// llama-imatrix's statistics: per weight (the output weight excluded, as llama.cpp does by default) the sum of
/// squared input activations per column, in double, and the rows and products seen.
/// </summary>
public sealed class ImportanceMatrixCollector : IMatMulInputObserver
{
    private readonly Dictionary<string, (double[] Sums, long Rows, int Calls)> _stats = new(StringComparer.Ordinal);

    public void Observe(int layer, string tensorName, ReadOnlySpan<float> rows, int count)
    {
        if (layer < 0 || count == 0)
            return;
        int width = rows.Length / count;
        if (!_stats.TryGetValue(tensorName, out var s))
            s = (new double[width], 0, 0);
        if (s.Sums.Length != width)
            throw new InvalidOperationException($"'{tensorName}' seen with rows of {width} and of {s.Sums.Length}");
        for (int t = 0; t < count; t++)
        {
            var x = rows.Slice(t * width, width);
            for (int j = 0; j < width; j++)
                s.Sums[j] += (double)x[j] * x[j];
        }
        _stats[tensorName] = (s.Sums, s.Rows + count, s.Calls + 1);
    }

    public ImportanceMatrix ToMatrix(int chunks, string dataset)
    {
        var entries = new Dictionary<string, ImportanceMatrixEntry>(StringComparer.Ordinal);
        foreach (var (name, s) in _stats)
        {
            var values = new float[s.Sums.Length];
            for (int j = 0; j < values.Length; j++)
                values[j] = (float)(s.Sums[j] / s.Rows * s.Calls);
            entries[name] = new ImportanceMatrixEntry(s.Calls, values);
        }
        return new ImportanceMatrix(entries, chunks, dataset);
    }
}
