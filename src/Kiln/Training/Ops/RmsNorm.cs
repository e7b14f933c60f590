using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// RMSNorm over the last dimension (Llama): y = x·rstd·w, rstd = 1/√(mean(x²) + eps), as the inference code
/// normalizes (x scaled by rstd, then by the weight). Forward keeps rstd per row.
/// </summary>
public sealed class RmsNorm<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private enum Phase { Forward, BackwardInput, BackwardParams }

    private Phase _phase;
    private ReadOnlyMemory<T> _x, _w, _dy, _rstd;
    private Memory<T> _y, _rstdOut, _dx, _dw;
    private int _rows, _dim;
    private T _eps;

    public RmsNorm(WorkerPool? pool) : base(pool) { }

    /// <summary>x[rows,dim], w[dim] → y[rows,dim]; rstd[rows] saved.</summary>
    public void Forward(ReadOnlyMemory<T> x, ReadOnlyMemory<T> w, Memory<T> y, Memory<T> rstd, int rows, int dim, T eps)
    {
        (_phase, _x, _w, _y, _rstdOut, _rows, _dim, _eps) = (Phase.Forward, x, w, y, rstd, rows, dim, eps);
        Run(rows);
    }

    /// <summary>dy[rows,dim] → dx[rows,dim] +=, dw[dim] +=.</summary>
    public void Backward(ReadOnlyMemory<T> dy, ReadOnlyMemory<T> x, ReadOnlyMemory<T> w, ReadOnlyMemory<T> rstd,
        Memory<T> dx, Memory<T> dw, int rows, int dim)
    {
        (_dy, _x, _w, _rstd, _dx, _dw, _rows, _dim) = (dy, x, w, rstd, dx, dw, rows, dim);
        _phase = Phase.BackwardInput;
        Run(rows);
        _phase = Phase.BackwardParams;
        Run(dim, 16);
    }

    public override void Execute(int begin, int end, int worker)
    {
        int dim = _dim;
        T n = T.CreateChecked(dim);
        switch (_phase)
        {
            case Phase.Forward:
            {
                var x = _x.Span; var w = _w.Span; var y = _y.Span; var rstdOut = _rstdOut.Span;
                for (int r = begin; r < end; r++)
                {
                    var xr = x.Slice(r * dim, dim);
                    var yr = y.Slice(r * dim, dim);
                    T ss = T.Zero;
                    for (int i = 0; i < dim; i++)
                        ss += xr[i] * xr[i];
                    T rstd = T.One / T.Sqrt(ss / n + _eps);
                    for (int i = 0; i < dim; i++)
                        yr[i] = xr[i] * rstd * w[i];
                    rstdOut[r] = rstd;
                }
                break;
            }
            case Phase.BackwardInput:
            {
                var dy = _dy.Span; var x = _x.Span; var w = _w.Span; var dx = _dx.Span; var rstds = _rstd.Span;
                for (int r = begin; r < end; r++)
                {
                    var xr = x.Slice(r * dim, dim);
                    var dyr = dy.Slice(r * dim, dim);
                    var dxr = dx.Slice(r * dim, dim);
                    T rstd = rstds[r];
                    // dx_j = rstd·dy_j·w_j − x_j·rstd³·mean(dy·w·x)
                    T dot = T.Zero;
                    for (int i = 0; i < dim; i++)
                        dot += dyr[i] * w[i] * xr[i];
                    T coef = rstd * rstd * rstd * dot / n;
                    for (int i = 0; i < dim; i++)
                        dxr[i] += rstd * dyr[i] * w[i] - xr[i] * coef;
                }
                break;
            }
            case Phase.BackwardParams:
            {
                var dy = _dy.Span; var x = _x.Span; var dw = _dw.Span; var rstds = _rstd.Span;
                for (int i = begin; i < end; i++)
                {
                    T s = T.Zero;
                    for (int r = 0; r < _rows; r++)
                        s += dy[r * dim + i] * x[r * dim + i] * rstds[r];
                    dw[i] += s;
                }
                break;
            }
        }
    }
}
