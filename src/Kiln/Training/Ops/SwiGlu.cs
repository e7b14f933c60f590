using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// SwiGLU on the fused gate/up projection: gateUp[rows, 2·ffn] holds gate in columns [0, ffn) and up in
/// [ffn, 2·ffn); y[rows, ffn] = silu(gate)·up, silu(g) = g·σ(g).
/// </summary>
public sealed class SwiGlu<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private bool _backward;
    private ReadOnlyMemory<T> _gateUp, _dy;
    private Memory<T> _y, _dGateUp;
    private int _ffn;

    public SwiGlu(WorkerPool? pool) : base(pool) { }

    public void Forward(ReadOnlyMemory<T> gateUp, Memory<T> y, int rows, int ffn)
    {
        (_backward, _gateUp, _y, _ffn) = (false, gateUp, y, ffn);
        Run(rows);
    }

    /// <summary>dy[rows, ffn] → dGateUp[rows, 2·ffn] +=.</summary>
    public void Backward(ReadOnlyMemory<T> dy, ReadOnlyMemory<T> gateUp, Memory<T> dGateUp, int rows, int ffn)
    {
        (_backward, _dy, _gateUp, _dGateUp, _ffn) = (true, dy, gateUp, dGateUp, ffn);
        Run(rows);
    }

    public override void Execute(int begin, int end, int worker)
    {
        int f = _ffn;
        var gu = _gateUp.Span;
        for (int r = begin; r < end; r++)
        {
            var gate = gu.Slice(r * 2 * f, f);
            var up = gu.Slice(r * 2 * f + f, f);
            if (!_backward)
            {
                var y = _y.Span.Slice(r * f, f);
                for (int i = 0; i < f; i++)
                {
                    T g = gate[i];
                    y[i] = g / (T.One + T.Exp(-g)) * up[i];
                }
            }
            else
            {
                var dy = _dy.Span.Slice(r * f, f);
                var dGate = _dGateUp.Span.Slice(r * 2 * f, f);
                var dUp = _dGateUp.Span.Slice(r * 2 * f + f, f);
                for (int i = 0; i < f; i++)
                {
                    T g = gate[i];
                    T sig = T.One / (T.One + T.Exp(-g));
                    T silu = g * sig;
                    dUp[i] += dy[i] * silu;
                    dGate[i] += dy[i] * up[i] * sig * (T.One + g * (T.One - sig));
                }
            }
        }
    }
}
