using System.Numerics.Tensors;
using Kiln.Models.Llama;

namespace Kiln.Quantization;

/// <summary>
/// GPTQ's calibration statistics: per weight input, H = 2/N · Σ x xᵀ over the N input rows seen, in double.
/// Weights that read one input share one matrix (attn_q/k/v read the attention norm's output, ffn_gate/up the
/// feed-forward norm's), so a layer holds four: two of the model width, one of the query width (attn_output)
/// and one of the feed-forward width (ffn_down). Collecting every layer in one pass costs Σ over layers of
/// those four n² doubles; <see cref="LayerwiseGptq"/> collects one layer per pass.
/// </summary>
public sealed class HessianCollector : IMatMulInputObserver
{
    private readonly Dictionary<string, (double[] Sum, int Width, long Rows)> _sums = new(StringComparer.Ordinal);
    private readonly int? _layer;
    private double[] _row = [];

    /// <param name="layer">Collect only this block's inputs (layer-by-layer GPTQ); null: every block.</param>
    public HessianCollector(int? layer = null) => _layer = layer;

    /// <summary>The tensor whose input statistics stand for <paramref name="tensorName"/>'s.</summary>
    public static string InputKey(string tensorName) => tensorName
        .Replace(".attn_k.", ".attn_q.", StringComparison.Ordinal)
        .Replace(".attn_v.", ".attn_q.", StringComparison.Ordinal)
        .Replace(".ffn_up.", ".ffn_gate.", StringComparison.Ordinal);

    public void Observe(int layer, string tensorName, ReadOnlySpan<float> rows, int count)
    {
        // the classifier and weights that share another's input are not collected (again)
        if (layer < 0 || count == 0 || InputKey(tensorName) != tensorName || (_layer is { } only && layer != only))
            return;
        int n = rows.Length / count;
        if (!_sums.TryGetValue(tensorName, out var s))
            s = (new double[(long)n * n], n, 0);
        if (_row.Length < n)
            _row = new double[n];
        var x = _row.AsSpan(0, n);
        for (int t = 0; t < count; t++)
        {
            var src = rows.Slice(t * n, n);
            for (int j = 0; j < n; j++)
                x[j] = src[j];
            // upper triangle only; the lower one is mirrored when read
            for (int i = 0; i < n; i++)
            {
                var target = s.Sum.AsSpan(i * n + i, n - i);
                TensorPrimitives.MultiplyAdd(x[i..], x[i], target, target);
            }
        }
        _sums[tensorName] = (s.Sum, n, s.Rows + count);
    }

    /// <summary>H for <paramref name="tensorName"/>'s input (a new n × n row-major array), or null when none was seen.</summary>
    public double[]? Hessian(string tensorName)
    {
        if (!_sums.TryGetValue(InputKey(tensorName), out var s) || s.Rows == 0)
            return null;
        int n = s.Width;
        var h = new double[(long)n * n];
        double scale = 2.0 / s.Rows;
        for (int i = 0; i < n; i++)
        {
            for (int j = i; j < n; j++)
                h[i * n + j] = h[j * n + i] = scale * s.Sum[i * n + j];
        }
        return h;
    }

    /// <summary>Bytes held by the collected sums.</summary>
    public long ByteSize => _sums.Values.Sum(s => (long)s.Sum.Length * sizeof(double));
}
