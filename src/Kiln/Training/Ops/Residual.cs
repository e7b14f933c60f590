using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>Residual connection y = a + b on [n]; the gradient passes unchanged to both inputs.</summary>
public sealed class Residual<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private const int Chunk = 4096;
    private bool _backward;
    private ReadOnlyMemory<T> _a, _b, _dy;
    private Memory<T> _y, _da, _db;

    public Residual(WorkerPool? pool) : base(pool) { }

    public void Forward(ReadOnlyMemory<T> a, ReadOnlyMemory<T> b, Memory<T> y)
    {
        (_backward, _a, _b, _y) = (false, a, b, y);
        Run(y.Length, Chunk);
    }

    /// <summary>da += dy, db += dy.</summary>
    public void Backward(ReadOnlyMemory<T> dy, Memory<T> da, Memory<T> db)
    {
        (_backward, _dy, _da, _db) = (true, dy, da, db);
        Run(dy.Length, Chunk);
    }

    public override void Execute(int begin, int end, int worker)
    {
        if (!_backward)
        {
            var a = _a.Span; var b = _b.Span; var y = _y.Span;
            for (int i = begin; i < end; i++)
                y[i] = a[i] + b[i];
        }
        else
        {
            var dy = _dy.Span; var da = _da.Span; var db = _db.Span;
            for (int i = begin; i < end; i++)
            {
                da[i] += dy[i];
                db[i] += dy[i];
            }
        }
    }
}
