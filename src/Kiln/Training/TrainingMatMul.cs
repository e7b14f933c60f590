using System.Numerics;
using System.Runtime.InteropServices;
using Kiln.Tensors;
using Kiln.Threading;
using Kiln.Training.Ops;

namespace Kiln.Training;

/// <summary>
/// The three matrix products of a linear layer, the one place the trainer multiplies matrices (so a blocked
/// GEMM can replace this in one spot). Row-major throughout:
///   Forward:        Y[n,m]  = X[n,k] · W[m,k]ᵀ
///   BackwardInput:  dX[n,k] += dY[n,m] · W[m,k]
///   BackwardWeight: dW[m,k] += dY[n,m]ᵀ · X[n,k]
/// Single precision goes to <see cref="Sgemm"/> (packed, register-tiled, one FMA chain per output element in k
/// order whatever the thread split); double precision, used by the gradient checks, to a simple tiled dot/axpy
/// product. Either way each output element is summed in a fixed order, so results are reproducible.
/// </summary>
public sealed class TrainingMatMul<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private const int Tile = 16;

    private enum Phase { Forward, BackwardInput, BackwardWeight }

    private Phase _phase;
    private ReadOnlyMemory<T> _a, _b;
    private Memory<T> _c;
    private int _n, _m, _k;

    public TrainingMatMul(WorkerPool? pool) : base(pool) { }

    /// <summary>y[n,m] = x[n,k]·w[m,k]ᵀ.</summary>
    public void Forward(ReadOnlyMemory<T> x, ReadOnlyMemory<T> w, Memory<T> y, int n, int m, int k)
    {
        Check(x.Length, n * k, w.Length, m * k, y.Length, n * m);
        if (typeof(T) == typeof(float))
        {
            Sgemm.Multiply(Floats(x), Floats(w), Floats(y), n, m, k, transposeA: false, transposeB: true, accumulate: false, Pool);
            return;
        }
        (_phase, _a, _b, _c, _n, _m, _k) = (Phase.Forward, x, w, y, n, m, k);
        Run(m, Tile);
    }

    /// <summary>dx[n,k] += dy[n,m]·w[m,k].</summary>
    public void BackwardInput(ReadOnlyMemory<T> dy, ReadOnlyMemory<T> w, Memory<T> dx, int n, int m, int k)
    {
        Check(dy.Length, n * m, w.Length, m * k, dx.Length, n * k);
        if (typeof(T) == typeof(float))
        {
            Sgemm.Multiply(Floats(dy), Floats(w), Floats(dx), n, k, m, transposeA: false, transposeB: false, accumulate: true, Pool);
            return;
        }
        (_phase, _a, _b, _c, _n, _m, _k) = (Phase.BackwardInput, dy, w, dx, n, m, k);
        Run(n);
    }

    /// <summary>dw[m,k] += dy[n,m]ᵀ·x[n,k].</summary>
    public void BackwardWeight(ReadOnlyMemory<T> dy, ReadOnlyMemory<T> x, Memory<T> dw, int n, int m, int k)
    {
        Check(dy.Length, n * m, x.Length, n * k, dw.Length, m * k);
        if (typeof(T) == typeof(float))
        {
            Sgemm.Multiply(Floats(dy), Floats(x), Floats(dw), m, k, n, transposeA: true, transposeB: false, accumulate: true, Pool);
            return;
        }
        (_phase, _a, _b, _c, _n, _m, _k) = (Phase.BackwardWeight, dy, x, dw, n, m, k);
        Run(m, Tile);
    }

    private static ReadOnlySpan<float> Floats(ReadOnlyMemory<T> m) => MemoryMarshal.Cast<T, float>(m.Span);

    private static Span<float> Floats(Memory<T> m) => MemoryMarshal.Cast<T, float>(m.Span);

    private static void Check(int a, int aWant, int b, int bWant, int c, int cWant)
    {
        if (a < aWant || b < bWant || c < cWant)
            throw new ArgumentException($"matrix buffers too small: {a}/{aWant}, {b}/{bWant}, {c}/{cWant}");
    }

    public override void Execute(int begin, int end, int worker)
    {
        var a = _a.Span;
        var b = _b.Span;
        var c = _c.Span;
        int n = _n, m = _m, k = _k;
        switch (_phase)
        {
            case Phase.Forward:
                // begin..end: rows of W (output columns); X streams past each tile of W.
                for (int j0 = begin; j0 < end; j0 += Tile)
                {
                    int j1 = Math.Min(end, j0 + Tile);
                    for (int i = 0; i < n; i++)
                    {
                        var xi = a.Slice(i * k, k);
                        var yi = c.Slice(i * m, m);
                        for (int j = j0; j < j1; j++)
                            yi[j] = DenseVector.Dot(xi, b.Slice(j * k, k));
                    }
                }
                break;
            case Phase.BackwardInput:
                // begin..end: rows of dX; each gathers every row of W scaled by its dY entry, in W's row order.
                for (int i = begin; i < end; i++)
                {
                    var dyi = a.Slice(i * m, m);
                    var dxi = c.Slice(i * k, k);
                    for (int j = 0; j < m; j++)
                        DenseVector.AddScaled(b.Slice(j * k, k), dyi[j], dxi);
                }
                break;
            case Phase.BackwardWeight:
                // begin..end: rows of dW; summed over the batch rows in order.
                for (int j0 = begin; j0 < end; j0 += Tile)
                {
                    int j1 = Math.Min(end, j0 + Tile);
                    for (int i = 0; i < n; i++)
                    {
                        var xi = b.Slice(i * k, k);
                        var dyi = a.Slice(i * m, m);
                        for (int j = j0; j < j1; j++)
                            DenseVector.AddScaled(xi, dyi[j], c.Slice(j * k, k));
                    }
                }
                break;
        }
    }
}
