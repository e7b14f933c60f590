namespace Kiln.Models.Llama;

/// <summary>
/// RoPE for a batch of rows at arbitrary positions: cos/sin per (row, pair) built as ggml's rope cache does (θ starts
/// at the position and is multiplied by base^(-2/n) from pair to pair in float, so angles round the same way).
/// </summary>
internal sealed class RotaryEmbedding
{
    private readonly LlamaConfig _c;
    private readonly int _half;
    private readonly float _thetaScale;
    private readonly float[] _cos;
    private readonly float[] _sin;

    public RotaryEmbedding(LlamaConfig config, int maxRows)
    {
        _c = config;
        _half = config.RopeDimensions / 2;
        _thetaScale = MathF.Pow(config.RopeFreqBase, -2f / config.RopeDimensions);
        _cos = new float[maxRows * _half];
        _sin = new float[maxRows * _half];
    }

    /// <summary>Prepares row <paramref name="row"/>'s angles for a token at <paramref name="position"/>.</summary>
    public void SetPosition(int row, int position)
    {
        float theta = position;
        int at = row * _half;
        for (int i = 0; i < _half; i++)
        {
            float angle = _c.RopeFreqScale * theta;
            _cos[at + i] = MathF.Cos(angle);
            _sin[at + i] = MathF.Sin(angle);
            theta *= _thetaScale;
        }
    }

    /// <summary>Rotates every head of one row's query or key vector in place.</summary>
    public void Apply(Span<float> heads, int headCount, int row)
    {
        int headDim = _c.HeadDim;
        var cos = _cos.AsSpan(row * _half, _half);
        var sin = _sin.AsSpan(row * _half, _half);
        bool neox = _c.RopeOrdering == RopeOrdering.NeoX;
        for (int h = 0; h < headCount; h++)
        {
            var x = heads.Slice(h * headDim, headDim);
            for (int i = 0; i < _half; i++)
            {
                int a = neox ? i : 2 * i;
                int b = neox ? i + _half : 2 * i + 1;
                float x0 = x[a], x1 = x[b];
                // x0·cos − x1·sin with the first product fused, as the C compiler contracts ggml's expression
                x[a] = MathF.FusedMultiplyAdd(x0, cos[i], -(x1 * sin[i]));
                x[b] = MathF.FusedMultiplyAdd(x0, sin[i], x1 * cos[i]);
            }
        }
    }
}
