using Kiln.Threading;
using Kiln.Training.Ops;
using static Kiln.Tests.Training.GradientCheck;

namespace Kiln.Tests.Training;

/// <summary>Each op's backward against float64 central differences of its forward, on random inputs of awkward sizes.</summary>
public sealed class OpGradientTests : IDisposable
{
    // three workers on awkward sizes: every op's work split lands mid-row or mid-column somewhere
    private readonly WorkerPool _pool = new(3);

    public void Dispose() => _pool.Dispose();

    [Fact]
    public void LayerNorm()
    {
        const int rows = 5, dim = 7;
        var op = new LayerNorm<double>(_pool);
        double[] x = Random(rows * dim, 1, 2), w = Random(dim, 2), b = Random(dim, 3), g = Random(rows * dim, 4);
        double[] y = new double[rows * dim], mean = new double[rows], rstd = new double[rows];
        double Loss()
        {
            op.Forward(x, w, b, y, mean, rstd, rows, dim, 1e-5);
            return Weighted(y, g);
        }
        Loss();
        double[] dx = new double[x.Length], dw = new double[dim], db = new double[dim];
        op.Backward(g, x, w, mean, rstd, dx, dw, db, rows, dim);
        Verify("dx", x, dx, Loss);
        Verify("dw", w, dw, Loss);
        Verify("db", b, db, Loss);
    }

    [Fact]
    public void RmsNorm()
    {
        const int rows = 5, dim = 9;
        var op = new RmsNorm<double>(_pool);
        double[] x = Random(rows * dim, 5, 2), w = Random(dim, 6), g = Random(rows * dim, 7);
        double[] y = new double[rows * dim], rstd = new double[rows];
        double Loss()
        {
            op.Forward(x, w, y, rstd, rows, dim, 1e-5);
            return Weighted(y, g);
        }
        Loss();
        double[] dx = new double[x.Length], dw = new double[dim];
        op.Backward(g, x, w, rstd, dx, dw, rows, dim);
        Verify("dx", x, dx, Loss);
        Verify("dw", w, dw, Loss);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Linear(bool withBias)
    {
        const int rows = 6, inDim = 19, outDim = 21;
        var op = new Linear<double>(_pool);
        double[] x = Random(rows * inDim, 8), w = Random(outDim * inDim, 9), b = withBias ? Random(outDim, 10) : [];
        double[] g = Random(rows * outDim, 11), y = new double[rows * outDim];
        double Loss()
        {
            op.Forward(x, w, b, y, rows, inDim, outDim);
            return Weighted(y, g);
        }
        Loss();
        double[] dx = new double[x.Length], dw = new double[w.Length], db = new double[b.Length];
        op.Backward(g, x, w, dx, dw, db, rows, inDim, outDim);
        Verify("dx", x, dx, Loss);
        Verify("dw", w, dw, Loss);
        if (withBias)
            Verify("db", b, db, Loss);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Embedding(bool positions)
    {
        const int vocab = 6, batch = 2, seq = 3, dim = 5;
        var op = new Embedding<double>(_pool);
        int[] tokens = [1, 4, 1, 0, 1, 5]; // token 1 three times: its gradient rows must add up
        double[] wte = Random(vocab * dim, 12), wpe = positions ? Random(seq * dim, 13) : [], g = Random(batch * seq * dim, 14);
        double[] y = new double[batch * seq * dim];
        double Loss()
        {
            op.Forward(tokens, wte, wpe, y, batch * seq, seq, dim);
            return Weighted(y, g);
        }
        Loss();
        double[] dwte = new double[wte.Length], dwpe = new double[wpe.Length];
        op.Backward(g, tokens, dwte, dwpe, batch * seq, seq, dim);
        Verify("dwte", wte, dwte, Loss);
        if (positions)
            Verify("dwpe", wpe, dwpe, Loss);
        Assert.All(dwte.AsSpan(2 * dim, dim).ToArray(), v => Assert.Equal(0.0, v)); // token 2 unused
    }

    [Fact]
    public void Rope()
    {
        const int batch = 2, seq = 5, headDim = 6, heads = 3, stride = 4 * headDim;
        var op = new Rope<double>(_pool, headDim, 8, 10000f);
        double[] x = Random(batch * seq * stride, 15), g = Random(x.Length, 16), y = new double[x.Length];
        double Loss()
        {
            x.CopyTo(y, 0);
            op.Forward(y, batch * seq, stride, heads, seq);
            return Weighted(y, g);
        }
        Loss();
        double[] dx = (double[])g.Clone();
        op.Backward(dx, batch * seq, stride, heads, seq);
        Verify("dx", x, dx, Loss);
        // the head past the rotated ones passes through unchanged
        Loss();
        for (int r = 0; r < batch * seq; r++)
            for (int i = heads * headDim; i < stride; i++)
                Assert.Equal(x[r * stride + i], y[r * stride + i]);
    }

    [Theory]
    [InlineData(4, 4, false)]
    [InlineData(4, 2, false)]
    [InlineData(6, 2, true)]
    [InlineData(3, 1, true)]
    public void CausalAttention(int heads, int kvHeads, bool recompute)
    {
        const int batch = 2, seq = 5, headDim = 3;
        var op = new CausalAttention<double>(_pool, heads, kvHeads, headDim, recompute);
        int rows = batch * seq, outDim = heads * headDim;
        double[] qkv = Random(rows * op.QkvDim, 17, 1.5), g = Random(rows * outDim, 18);
        double[] y = new double[rows * outDim], probs = new double[batch * heads * seq * seq], lse = new double[batch * heads * seq];
        double Loss()
        {
            op.Forward(qkv, y, probs, lse, batch, seq);
            return Weighted(y, g);
        }
        Loss();
        double[] dqkv = new double[qkv.Length];
        op.Backward(g, qkv, probs, lse, dqkv, batch, seq);
        Verify("dqkv", qkv, dqkv, Loss);
    }

    [Fact]
    public void AttentionIsCausal()
    {
        const int batch = 1, seq = 6, heads = 2, headDim = 4;
        var op = new CausalAttention<double>(null, heads, heads, headDim, false);
        double[] qkv = Random(seq * op.QkvDim, 19), y1 = new double[seq * heads * headDim], y2 = new double[y1.Length];
        double[] probs = new double[heads * seq * seq], lse = new double[heads * seq];
        op.Forward(qkv, y1, probs, lse, batch, seq);
        for (int i = 0; i < op.QkvDim; i++)
            qkv[(seq - 1) * op.QkvDim + i] += 1; // change only the last position
        op.Forward(qkv, y2, probs, lse, batch, seq);
        Assert.Equal(y1.AsSpan(0, (seq - 1) * heads * headDim).ToArray(), y2.AsSpan(0, (seq - 1) * heads * headDim).ToArray());
        Assert.NotEqual(y1[^1], y2[^1]);
    }

    [Fact]
    public void Gelu()
    {
        var op = new Gelu<double>(_pool);
        double[] x = Random(9001, 20, 4), g = Random(x.Length, 21), y = new double[x.Length];
        double Loss()
        {
            op.Forward(x, y);
            return Weighted(y, g);
        }
        Loss();
        double[] dx = new double[x.Length];
        op.Backward(g, x, dx);
        Verify("dx", x, dx, Loss, stride: 7);
        Assert.Equal(0.5 * 1.5 * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (1.5 + 0.044715 * 1.5 * 1.5 * 1.5))), GeluOf(op, 1.5), 15);
    }

    private static double GeluOf(Gelu<double> op, double v)
    {
        double[] y = new double[1];
        op.Forward(new[] { v }, y);
        return y[0];
    }

    [Fact]
    public void SwiGlu()
    {
        const int rows = 4, ffn = 11;
        var op = new SwiGlu<double>(_pool);
        double[] gu = Random(rows * 2 * ffn, 22, 3), g = Random(rows * ffn, 23), y = new double[rows * ffn];
        double Loss()
        {
            op.Forward(gu, y, rows, ffn);
            return Weighted(y, g);
        }
        Loss();
        double[] dgu = new double[gu.Length];
        op.Backward(g, gu, dgu, rows, ffn);
        Verify("dgateup", gu, dgu, Loss);
    }

    [Fact]
    public void Residual()
    {
        var op = new Residual<double>(_pool);
        double[] a = Random(10001, 24), b = Random(a.Length, 25), g = Random(a.Length, 26), y = new double[a.Length];
        double Loss()
        {
            op.Forward(a, b, y);
            return Weighted(y, g);
        }
        Loss();
        double[] da = new double[a.Length], db = new double[a.Length];
        op.Backward(g, da, db);
        Verify("da", a, da, Loss, stride: 13);
        Verify("db", b, db, Loss, stride: 13);
    }

    [Fact]
    public void SoftmaxCrossEntropy()
    {
        const int rows = 5, vocab = 13;
        var op = new SoftmaxCrossEntropy<double>(_pool);
        double[] logits = Random(rows * vocab, 27, 4), losses = new double[rows];
        int[] targets = [0, 12, 5, 5, 7];
        const double scale = 1.0 / rows;
        double Loss()
        {
            op.Forward(logits, targets, losses, rows, vocab);
            return losses.Sum() * scale;
        }
        double loss = Loss();
        double[] dlogits = new double[logits.Length];
        op.Backward(logits, targets, dlogits, rows, vocab, scale);
        Verify("dlogits", logits, dlogits, Loss);

        // the loss itself, from the definition
        double expected = 0;
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int i = 0; i < vocab; i++)
                s += Math.Exp(logits[r * vocab + i]);
            expected += Math.Log(s) - logits[r * vocab + targets[r]];
        }
        Assert.Equal(expected / rows, loss, 12);

        // in place: the logits buffer itself becomes dlogits
        double[] inPlace = (double[])logits.Clone();
        op.Backward(inPlace, targets, inPlace, rows, vocab, scale);
        Assert.Equal(dlogits, inPlace);
    }
}
