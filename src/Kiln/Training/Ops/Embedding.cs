using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// Token embedding plus optional learned positions (GPT-2): out[b,t,:] = wte[token[b,t],:] (+ wpe[t,:]).
/// Positions restart at 0 in every sequence of the batch.
/// </summary>
public sealed class Embedding<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private enum Phase { Forward, Backward }

    private Phase _phase;
    private ReadOnlyMemory<int> _tokens;
    private ReadOnlyMemory<T> _wte, _wpe, _dout;
    private Memory<T> _out, _dwte, _dwpe;
    private int _rows, _seqLen, _dim;

    public Embedding(WorkerPool? pool) : base(pool) { }

    /// <summary>tokens[rows] (rows = batch·seqLen), wte[vocab,dim], wpe[≥seqLen,dim] or empty → out[rows,dim].</summary>
    public void Forward(ReadOnlyMemory<int> tokens, ReadOnlyMemory<T> wte, ReadOnlyMemory<T> wpe, Memory<T> output, int rows, int seqLen, int dim)
    {
        (_phase, _tokens, _wte, _wpe, _out, _rows, _seqLen, _dim) = (Phase.Forward, tokens, wte, wpe, output, rows, seqLen, dim);
        int vocab = wte.Length / dim;
        foreach (int t in tokens.Span[..rows])
            if ((uint)t >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(tokens), t, $"token id outside the vocabulary of {vocab}");
        Run(rows);
    }

    /// <summary>dout[rows,dim] → dwte +=, dwpe += (when given).</summary>
    public void Backward(ReadOnlyMemory<T> dout, ReadOnlyMemory<int> tokens, Memory<T> dwte, Memory<T> dwpe, int rows, int seqLen, int dim)
    {
        (_phase, _dout, _tokens, _dwte, _dwpe, _rows, _seqLen, _dim) = (Phase.Backward, dout, tokens, dwte, dwpe, rows, seqLen, dim);
        // split by column: repeated tokens add into the same row, so rows cannot be split; columns can
        Run(dim, 16);
    }

    public override void Execute(int begin, int end, int worker)
    {
        int dim = _dim;
        var tokens = _tokens.Span;
        if (_phase == Phase.Forward)
        {
            var wte = _wte.Span; var wpe = _wpe.Span; var output = _out.Span;
            bool positions = !_wpe.IsEmpty;
            for (int r = begin; r < end; r++)
            {
                var o = output.Slice(r * dim, dim);
                var e = wte.Slice(tokens[r] * dim, dim);
                if (positions)
                {
                    var p = wpe.Slice(r % _seqLen * dim, dim);
                    for (int i = 0; i < dim; i++)
                        o[i] = e[i] + p[i];
                }
                else
                {
                    e.CopyTo(o);
                }
            }
        }
        else
        {
            var dout = _dout.Span; var dwte = _dwte.Span; var dwpe = _dwpe.Span;
            bool positions = !_dwpe.IsEmpty;
            int width = end - begin;
            for (int r = 0; r < _rows; r++)
            {
                var g = dout.Slice(r * dim + begin, width);
                var dt = dwte.Slice(tokens[r] * dim + begin, width);
                for (int i = 0; i < width; i++)
                    dt[i] += g[i];
                if (positions)
                {
                    var dp = dwpe.Slice(r % _seqLen * dim + begin, width);
                    for (int i = 0; i < width; i++)
                        dp[i] += g[i];
                }
            }
        }
    }
}
