using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>GELU, tanh approximation as GPT-2: y = ½x(1 + tanh(√(2/π)(x + 0.044715x³))). Element-wise on [n].</summary>
public sealed class Gelu<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private const int Chunk = 4096;
    private static readonly T Half = T.CreateChecked(0.5);
    private static readonly T Cube = T.CreateChecked(0.044715);
    private static readonly T Sqrt2OverPi = T.CreateChecked(0.7978845608028654);
    private static readonly T Three = T.CreateChecked(3);

    private bool _backward;
    private ReadOnlyMemory<T> _x, _dy;
    private Memory<T> _y, _dx;

    public Gelu(WorkerPool? pool) : base(pool) { }

    public void Forward(ReadOnlyMemory<T> x, Memory<T> y)
    {
        (_backward, _x, _y) = (false, x, y);
        Run(x.Length, Chunk);
    }

    /// <summary>dx[n] += dy·gelu'(x).</summary>
    public void Backward(ReadOnlyMemory<T> dy, ReadOnlyMemory<T> x, Memory<T> dx)
    {
        (_backward, _dy, _x, _dx) = (true, dy, x, dx);
        Run(x.Length, Chunk);
    }

    public override void Execute(int begin, int end, int worker)
    {
        var x = _x.Span;
        if (!_backward)
        {
            var y = _y.Span;
            for (int i = begin; i < end; i++)
            {
                T v = x[i];
                y[i] = Half * v * (T.One + T.Tanh(Sqrt2OverPi * (v + Cube * v * v * v)));
            }
            return;
        }
        var dy = _dy.Span;
        var dx = _dx.Span;
        for (int i = begin; i < end; i++)
        {
            T v = x[i];
            T th = T.Tanh(Sqrt2OverPi * (v + Cube * v * v * v));
            T sech2 = T.One - th * th;
            T grad = Half * (T.One + th) + Half * v * sech2 * Sqrt2OverPi * (T.One + Three * Cube * v * v);
            dx[i] += dy[i] * grad;
        }
    }
}
