using System.Numerics;
using Kiln.Threading;

namespace Kiln.Training.Ops;

/// <summary>
/// Causal multi-head attention with grouped KV heads (GQA; heads = kvHeads gives plain multi-head attention).
/// Input is the fused projection qkv[B,T,(H + 2·Hkv)·hd]: H query heads, then Hkv key heads, then Hkv value heads;
/// query head h reads KV head h / (H/Hkv), as llama.cpp groups them. out[B,T,H·hd] = softmax(q·kᵀ/√hd)·v.
/// Forward saves the log-sum-exp of every score row (lse[B,H,T]) and, unless recomputing, the probabilities
/// (probs[B,H,T,T], the memory-hungry part); with recomputation the backward pass rebuilds each probability row as
/// exp(s − lse), trading one more q·k pass for O(B·H·T²) memory.
/// </summary>
public sealed class CausalAttention<T> : ParallelOp where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly int _heads, _kvHeads, _headDim;
    private readonly T _scale;
    private T[][] _scratch = [];
    private bool _backward;
    private ReadOnlyMemory<T> _qkv, _dout;
    private Memory<T> _out, _probs, _lse, _dqkv;
    private int _batch, _seqLen;

    public CausalAttention(WorkerPool? pool, int heads, int kvHeads, int headDim, bool recompute) : base(pool)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
            throw new ArgumentException($"{heads} heads cannot be grouped over {kvHeads} KV heads");
        (_heads, _kvHeads, _headDim, Recompute) = (heads, kvHeads, headDim, recompute);
        _scale = T.One / T.Sqrt(T.CreateChecked(headDim));
    }

    public bool Recompute { get; }

    public int QkvDim => (_heads + 2 * _kvHeads) * _headDim;

    /// <summary>qkv[B·T, QkvDim] → out[B·T, H·hd]; lse[B·H·T] and (unless recomputing) probs[B·H·T·T] saved.</summary>
    public void Forward(ReadOnlyMemory<T> qkv, Memory<T> output, Memory<T> probs, Memory<T> lse, int batch, int seqLen)
    {
        EnsureScratch(seqLen);
        (_backward, _qkv, _out, _probs, _lse, _batch, _seqLen) = (false, qkv, output, probs, lse, batch, seqLen);
        Run(batch * _heads);
    }

    /// <summary>dout[B·T, H·hd] → dqkv[B·T, QkvDim] +=, from the saved qkv, probs/lse.</summary>
    public void Backward(ReadOnlyMemory<T> dout, ReadOnlyMemory<T> qkv, Memory<T> probs, Memory<T> lse, Memory<T> dqkv, int batch, int seqLen)
    {
        EnsureScratch(seqLen);
        (_backward, _dout, _qkv, _probs, _lse, _dqkv, _batch, _seqLen) = (true, dout, qkv, probs, lse, dqkv, batch, seqLen);
        // one unit per (sequence, KV head): the query heads sharing a KV head add into the same dK/dV rows
        Run(batch * _kvHeads);
    }

    private void EnsureScratch(int seqLen)
    {
        if (_scratch.Length == ThreadCount && _scratch[0].Length >= 2 * seqLen)
            return;
        _scratch = new T[ThreadCount][];
        for (int i = 0; i < _scratch.Length; i++)
            _scratch[i] = new T[2 * seqLen];
    }

    public override void Execute(int begin, int end, int worker)
    {
        if (_backward)
        {
            for (int unit = begin; unit < end; unit++)
            {
                int b = unit / _kvHeads, g = unit % _kvHeads;
                int group = _heads / _kvHeads;
                for (int h = g * group; h < (g + 1) * group; h++)
                    BackwardHead(b, h, g, worker);
            }
        }
        else
        {
            for (int unit = begin; unit < end; unit++)
                ForwardHead(unit / _heads, unit % _heads, worker);
        }
    }

    private void ForwardHead(int b, int h, int worker)
    {
        int hd = _headDim, stride = QkvDim, seq = _seqLen;
        int g = h / (_heads / _kvHeads);
        var qkv = _qkv.Span;
        var output = _out.Span;
        var lse = _lse.Span;
        var scores = _scratch[worker].AsSpan(0, seq);
        int kOffset = (_heads + g) * hd, vOffset = (_heads + _kvHeads + g) * hd;
        int outDim = _heads * hd;
        for (int i = 0; i < seq; i++)
        {
            int row = b * seq + i;
            var q = qkv.Slice(row * stride + h * hd, hd);
            T max = T.NegativeInfinity;
            for (int j = 0; j <= i; j++)
            {
                T s = DenseVector.Dot(q, qkv.Slice((b * seq + j) * stride + kOffset, hd)) * _scale;
                scores[j] = s;
                if (s > max)
                    max = s;
            }
            T sum = T.Zero;
            for (int j = 0; j <= i; j++)
            {
                T e = T.Exp(scores[j] - max);
                scores[j] = e;
                sum += e;
            }
            T inv = T.One / sum;
            lse[(b * _heads + h) * seq + i] = max + T.Log(sum);
            var o = output.Slice(row * outDim + h * hd, hd);
            o.Clear();
            for (int j = 0; j <= i; j++)
            {
                T p = scores[j] * inv;
                scores[j] = p;
                DenseVector.AddScaled(qkv.Slice((b * seq + j) * stride + vOffset, hd), p, o);
            }
            if (!Recompute)
            {
                var probs = _probs.Span.Slice(((b * _heads + h) * seq + i) * seq, seq);
                scores[..(i + 1)].CopyTo(probs);
                probs[(i + 1)..].Clear();
            }
        }
    }

    private void BackwardHead(int b, int h, int g, int worker)
    {
        int hd = _headDim, stride = QkvDim, seq = _seqLen;
        var qkv = _qkv.Span;
        var dout = _dout.Span;
        var dqkv = _dqkv.Span;
        var lse = _lse.Span;
        var p = _scratch[worker].AsSpan(0, seq);
        var dp = _scratch[worker].AsSpan(seq, seq);
        int kOffset = (_heads + g) * hd, vOffset = (_heads + _kvHeads + g) * hd;
        int outDim = _heads * hd;
        for (int i = 0; i < seq; i++)
        {
            int row = b * seq + i;
            var q = qkv.Slice(row * stride + h * hd, hd);
            var dq = dqkv.Slice(row * stride + h * hd, hd);
            var d = dout.Slice(row * outDim + h * hd, hd);
            if (Recompute)
            {
                T l = lse[(b * _heads + h) * seq + i];
                for (int j = 0; j <= i; j++)
                    p[j] = T.Exp(DenseVector.Dot(q, qkv.Slice((b * seq + j) * stride + kOffset, hd)) * _scale - l);
            }
            else
            {
                _probs.Span.Slice(((b * _heads + h) * seq + i) * seq, i + 1).CopyTo(p);
            }
            // dp_j = dout·v_j; dv_j += p_j·dout; ds_j = p_j·(dp_j − Σ p·dp)
            T pdp = T.Zero;
            for (int j = 0; j <= i; j++)
            {
                int rj = (b * seq + j) * stride;
                dp[j] = DenseVector.Dot(d, qkv.Slice(rj + vOffset, hd));
                pdp += p[j] * dp[j];
                DenseVector.AddScaled(d, p[j], dqkv.Slice(rj + vOffset, hd));
            }
            for (int j = 0; j <= i; j++)
            {
                int rj = (b * seq + j) * stride;
                T ds = p[j] * (dp[j] - pdp) * _scale;
                DenseVector.AddScaled(qkv.Slice(rj + kOffset, hd), ds, dq);
                DenseVector.AddScaled(q, ds, dqkv.Slice(rj + kOffset, hd));
            }
        }
    }
}
