using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// LayerNorm over the last dimension (GPT-2): y = (x − mean)·rstd·w + b, rstd = 1/√(var + eps), biased variance.
/// Forward keeps mean and rstd per row for the backward pass.
/// </summary>
public sealed class LayerNorm<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private enum Phase { Forward, BackwardInput, BackwardParams }

    private Phase _phase;
    private ReadOnlyMemory<T> _x, _w, _b, _dy, _mean, _rstd;
    private Memory<T> _y, _meanOut, _rstdOut, _dx, _dw, _db;
    private int _rows, _dim;
    private T _eps;

    public LayerNorm(WorkerPool? pool) : base(pool) { }

    /// <summary>x[rows,dim], w[dim], b[dim] → y[rows,dim]; mean[rows], rstd[rows] saved.</summary>
    public void Forward(ReadOnlyMemory<T> x, ReadOnlyMemory<T> w, ReadOnlyMemory<T> b, Memory<T> y, Memory<T> mean, Memory<T> rstd,
        int rows, int dim, T eps)
    {
        (_phase, _x, _w, _b, _y, _meanOut, _rstdOut, _rows, _dim, _eps) = (Phase.Forward, x, w, b, y, mean, rstd, rows, dim, eps);
        Run(rows);
    }

    /// <summary>dy[rows,dim] → dx[rows,dim] +=, dw[dim] +=, db[dim] +=.</summary>
    public void Backward(ReadOnlyMemory<T> dy, ReadOnlyMemory<T> x, ReadOnlyMemory<T> w, ReadOnlyMemory<T> mean, ReadOnlyMemory<T> rstd,
        Memory<T> dx, Memory<T> dw, Memory<T> db, int rows, int dim)
    {
        (_dy, _x, _w, _mean, _rstd, _dx, _dw, _db, _rows, _dim) = (dy, x, w, mean, rstd, dx, dw, db, rows, dim);
        _phase = Phase.BackwardInput;
        Run(rows);
        // parameter gradients split by column: each column sums over rows in row order, whatever the thread count
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
                var x = _x.Span; var w = _w.Span; var b = _b.Span; var y = _y.Span;
                var meanOut = _meanOut.Span; var rstdOut = _rstdOut.Span;
                for (int r = begin; r < end; r++)
                {
                    var xr = x.Slice(r * dim, dim);
                    var yr = y.Slice(r * dim, dim);
                    T sum = T.Zero;
                    for (int i = 0; i < dim; i++)
                        sum += xr[i];
                    T mean = sum / n;
                    T var = T.Zero;
                    for (int i = 0; i < dim; i++)
                    {
                        T d = xr[i] - mean;
                        var += d * d;
                    }
                    T rstd = T.One / T.Sqrt(var / n + _eps);
                    for (int i = 0; i < dim; i++)
                        yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
                    meanOut[r] = mean;
                    rstdOut[r] = rstd;
                }
                break;
            }
            case Phase.BackwardInput:
            {
                var dy = _dy.Span; var x = _x.Span; var w = _w.Span; var dx = _dx.Span;
                var means = _mean.Span; var rstds = _rstd.Span;
                for (int r = begin; r < end; r++)
                {
                    var xr = x.Slice(r * dim, dim);
                    var dyr = dy.Slice(r * dim, dim);
                    var dxr = dx.Slice(r * dim, dim);
                    T mean = means[r], rstd = rstds[r];
                    // dx = rstd·(dn − mean(dn) − x̂·mean(dn·x̂)) with dn = dy·w, x̂ the normalized input
                    T dnMean = T.Zero, dnXhatMean = T.Zero;
                    for (int i = 0; i < dim; i++)
                    {
                        T dn = dyr[i] * w[i];
                        dnMean += dn;
                        dnXhatMean += dn * (xr[i] - mean) * rstd;
                    }
                    dnMean /= n;
                    dnXhatMean /= n;
                    for (int i = 0; i < dim; i++)
                    {
                        T xhat = (xr[i] - mean) * rstd;
                        dxr[i] += rstd * (dyr[i] * w[i] - dnMean - xhat * dnXhatMean);
                    }
                }
                break;
            }
            case Phase.BackwardParams:
            {
                var dy = _dy.Span; var x = _x.Span; var dw = _dw.Span; var db = _db.Span;
                var means = _mean.Span; var rstds = _rstd.Span;
                for (int i = begin; i < end; i++)
                {
                    T sw = T.Zero, sb = T.Zero;
                    for (int r = 0; r < _rows; r++)
                    {
                        T g = dy[r * dim + i];
                        sw += g * (x[r * dim + i] - means[r]) * rstds[r];
                        sb += g;
                    }
                    dw[i] += sw;
                    db[i] += sb;
                }
                break;
            }
        }
    }
}
