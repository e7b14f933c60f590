using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// Softmax and cross-entropy fused: loss[r] = logsumexp(logits[r]) − logits[r, target[r]]. Backward writes
/// dlogits = (softmax − onehot)·scale, recomputing the softmax from the logits, and may write over the logits
/// themselves (the logits are the largest activation; llm.c does the same).
/// </summary>
public sealed class SoftmaxCrossEntropy<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private bool _backward;
    private ReadOnlyMemory<T> _logits;
    private ReadOnlyMemory<int> _targets;
    private Memory<T> _losses, _dlogits;
    private int _vocab;
    private T _scale;

    public SoftmaxCrossEntropy(WorkerPool? pool) : base(pool) { }

    /// <summary>logits[rows,vocab], targets[rows] → losses[rows].</summary>
    public void Forward(ReadOnlyMemory<T> logits, ReadOnlyMemory<int> targets, Memory<T> losses, int rows, int vocab)
    {
        foreach (int t in targets.Span[..rows])
            if ((uint)t >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(targets), t, $"target id outside the vocabulary of {vocab}");
        (_backward, _logits, _targets, _losses, _vocab) = (false, logits, targets, losses, vocab);
        Run(rows);
    }

    /// <summary>dlogits[rows,vocab] = (softmax(logits) − onehot(target))·scale; dlogits may be the logits buffer.</summary>
    public void Backward(ReadOnlyMemory<T> logits, ReadOnlyMemory<int> targets, Memory<T> dlogits, int rows, int vocab, T scale)
    {
        (_backward, _logits, _targets, _dlogits, _vocab, _scale) = (true, logits, targets, dlogits, vocab, scale);
        Run(rows);
    }

    public override void Execute(int begin, int end, int worker)
    {
        int v = _vocab;
        var logits = _logits.Span;
        var targets = _targets.Span;
        for (int r = begin; r < end; r++)
        {
            var row = logits.Slice(r * v, v);
            T max = T.NegativeInfinity;
            for (int i = 0; i < v; i++)
                if (row[i] > max)
                    max = row[i];
            T sum = T.Zero;
            for (int i = 0; i < v; i++)
                sum += T.Exp(row[i] - max);
            if (!_backward)
            {
                _losses.Span[r] = max + T.Log(sum) - row[targets[r]];
                continue;
            }
            T inv = T.One / sum;
            var d = _dlogits.Span.Slice(r * v, v);
            int target = targets[r];
            for (int i = 0; i < v; i++)
            {
                T p = T.Exp(row[i] - max) * inv;
                d[i] = (i == target ? p - T.One : p) * _scale;
            }
        }
    }
}
