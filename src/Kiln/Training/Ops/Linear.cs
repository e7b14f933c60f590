using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// Linear layer y = x·Wᵀ (+ b), W stored [out, in] as GGUF and llm.c store it. The products go through
/// <see cref="TrainingMatMul{T}"/>; this adds the bias and its gradient.
/// </summary>
public sealed class Linear<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private enum Phase { AddBias, BiasGradient }

    private readonly TrainingMatMul<T> _matMul;
    private Phase _phase;
    private ReadOnlyMemory<T> _bias, _dy;
    private Memory<T> _y, _db;
    private int _rows, _outDim;

    public Linear(WorkerPool? pool) : base(pool) => _matMul = new TrainingMatMul<T>(pool);

    /// <summary>x[rows,inDim], w[outDim,inDim], bias[outDim] or empty → y[rows,outDim].</summary>
    public void Forward(ReadOnlyMemory<T> x, ReadOnlyMemory<T> w, ReadOnlyMemory<T> bias, Memory<T> y, int rows, int inDim, int outDim)
    {
        _matMul.Forward(x, w, y, rows, outDim, inDim);
        if (!bias.IsEmpty)
        {
            (_phase, _bias, _y, _rows, _outDim) = (Phase.AddBias, bias, y, rows, outDim);
            Run(rows);
        }
    }

    /// <summary>dy[rows,outDim] → dx[rows,inDim] +=, dw[outDim,inDim] +=, db[outDim] += (when given).</summary>
    public void Backward(ReadOnlyMemory<T> dy, ReadOnlyMemory<T> x, ReadOnlyMemory<T> w, Memory<T> dx, Memory<T> dw, Memory<T> db,
        int rows, int inDim, int outDim)
    {
        _matMul.BackwardWeight(dy, x, dw, rows, outDim, inDim);
        _matMul.BackwardInput(dy, w, dx, rows, outDim, inDim);
        if (!db.IsEmpty)
        {
            (_phase, _dy, _db, _rows, _outDim) = (Phase.BiasGradient, dy, db, rows, outDim);
            Run(outDim, 16);
        }
    }

    public override void Execute(int begin, int end, int worker)
    {
        int m = _outDim;
        if (_phase == Phase.AddBias)
        {
            var b = _bias.Span; var y = _y.Span;
            for (int r = begin; r < end; r++)
            {
                var yr = y.Slice(r * m, m);
                for (int j = 0; j < m; j++)
                    yr[j] += b[j];
            }
        }
        else
        {
            var dy = _dy.Span; var db = _db.Span;
            for (int j = begin; j < end; j++)
            {
                T s = T.Zero;
                for (int r = 0; r < _rows; r++)
                    s += dy[r * m + j];
                db[j] += s;
            }
        }
    }
}
