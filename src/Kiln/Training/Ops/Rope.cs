using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// Rotary position embedding in Llama's "normal" ordering (pairs 2i, 2i+1 of each head), with the inference code's
/// angles: θ starts at the position and is multiplied by base^(−2/d) in float from pair to pair, and
/// x0' = fma(x0, cos, −x1·sin), x1' = fma(x0, sin, x1·cos). A model trained with it exports without permuting
/// Q/K rows and runs the same in Kiln and llama.cpp. Rotation is orthogonal, so backward rotates by −θ and needs
/// no saved input: both passes work in place.
/// </summary>
public sealed class Rope<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly T[] _cos;
    private readonly T[] _sin;
    private readonly int _headDim;
    private bool _backward;
    private Memory<T> _x;
    private int _rowStride, _heads, _seqLen;

    public Rope(WorkerPool? pool, int headDim, int maxPositions, float freqBase) : base(pool)
    {
        if (headDim <= 0 || headDim % 2 != 0)
            throw new ArgumentException($"head dimension {headDim} must be positive and even", nameof(headDim));
        _headDim = headDim;
        int half = headDim / 2;
        _cos = new T[maxPositions * half];
        _sin = new T[maxPositions * half];
        float thetaScale = MathF.Pow(freqBase, -2f / headDim);
        for (int t = 0; t < maxPositions; t++)
        {
            float theta = t;
            for (int i = 0; i < half; i++)
            {
                _cos[t * half + i] = T.CreateChecked(MathF.Cos(theta));
                _sin[t * half + i] = T.CreateChecked(MathF.Sin(theta));
                theta *= thetaScale;
            }
        }
    }

    public int MaxPositions => _cos.Length / (_headDim / 2);

    /// <summary>Rotates, in place, the first <paramref name="heads"/> heads of every row of x[rows,rowStride]; row r is position r % seqLen.</summary>
    public void Forward(Memory<T> x, int rows, int rowStride, int heads, int seqLen) => Dispatch(false, x, rows, rowStride, heads, seqLen);

    /// <summary>dx from dy in place: the inverse rotation of the same heads.</summary>
    public void Backward(Memory<T> dx, int rows, int rowStride, int heads, int seqLen) => Dispatch(true, dx, rows, rowStride, heads, seqLen);

    private void Dispatch(bool backward, Memory<T> x, int rows, int rowStride, int heads, int seqLen)
    {
        if (seqLen > MaxPositions)
            throw new ArgumentException($"sequence length {seqLen} exceeds the {MaxPositions} positions RoPE was built for");
        (_backward, _x, _rowStride, _heads, _seqLen) = (backward, x, rowStride, heads, seqLen);
        Run(rows);
    }

    public override void Execute(int begin, int end, int worker)
    {
        var x = _x.Span;
        int half = _headDim / 2;
        for (int r = begin; r < end; r++)
        {
            int pos = r % _seqLen;
            var cos = _cos.AsSpan(pos * half, half);
            var sin = _sin.AsSpan(pos * half, half);
            for (int h = 0; h < _heads; h++)
            {
                var v = x.Slice(r * _rowStride + h * _headDim, _headDim);
                for (int i = 0; i < half; i++)
                {
                    T x0 = v[2 * i], x1 = v[2 * i + 1];
                    if (_backward)
                    {
                        v[2 * i] = x0 * cos[i] + x1 * sin[i];
                        v[2 * i + 1] = x1 * cos[i] - x0 * sin[i];
                    }
                    else
                    {
                        v[2 * i] = T.FusedMultiplyAdd(x0, cos[i], -(x1 * sin[i]));
                        v[2 * i + 1] = T.FusedMultiplyAdd(x0, sin[i], x1 * cos[i]);
                    }
                }
            }
        }
    }
}
