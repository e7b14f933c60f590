using Kiln.Quantization;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Tests.Quantization;

/// <summary>
/// GPTQ on a random linear layer whose inputs are strongly correlated (what makes error compensation pay):
/// the output error ‖WX − QX‖² against round-to-nearest on the same block format, act-order's permutation,
/// and the cases where no error should move.
/// </summary>
public class GptqQuantizerTests
{
    private const int Rows = 24, Columns = 256, Samples = 1024;

    /// <summary>X = A·Z with Z Gaussian: columns that are mixtures of a few common factors, plus noise and a few loud columns.</summary>
    private static float[] CorrelatedInputs(Random random)
    {
        const int factors = 16;
        var a = new double[Columns * factors];
        for (int i = 0; i < a.Length; i++)
            a[i] = Gaussian(random);
        var x = new float[Samples * Columns];
        var z = new double[factors];
        for (int s = 0; s < Samples; s++)
        {
            for (int f = 0; f < factors; f++)
                z[f] = Gaussian(random);
            for (int c = 0; c < Columns; c++)
            {
                double v = 0.1 * Gaussian(random);
                for (int f = 0; f < factors; f++)
                    v += a[c * factors + f] * z[f];
                x[s * Columns + c] = (float)(v * (c % 37 == 0 ? 5 : 1));
            }
        }
        return x;
    }

    private static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    private static double[] Hessian(float[] x)
    {
        var h = new double[Columns * Columns];
        for (int s = 0; s < Samples; s++)
        {
            for (int i = 0; i < Columns; i++)
            {
                for (int j = 0; j < Columns; j++)
                    h[i * Columns + j] += 2.0 / Samples * x[s * Columns + i] * x[s * Columns + j];
            }
        }
        return h;
    }

    private static float[] Weights(Random random) =>
        Enumerable.Range(0, Rows * Columns).Select(_ => (float)Gaussian(random)).ToArray();

    private static float[] Dequantize(GgmlType type, byte[] q)
    {
        int rowBytes = (int)GgmlTypeTraits.RowBytes(type, Columns);
        var w = new float[Rows * Columns];
        for (int r = 0; r < Rows; r++)
            RowKernels.Dequantize(type, q.AsSpan(r * rowBytes, rowBytes), w.AsSpan(r * Columns, Columns));
        return w;
    }

    private static byte[] RoundToNearest(GgmlType type, float[] w)
    {
        int rowBytes = (int)GgmlTypeTraits.RowBytes(type, Columns);
        var q = new byte[Rows * rowBytes];
        for (int r = 0; r < Rows; r++)
            RowQuantizer.Quantize(type, w.AsSpan(r * Columns, Columns), q.AsSpan(r * rowBytes, rowBytes));
        return q;
    }

    private static byte[] Gptq(GgmlType type, float[] w, double[] h, bool actOrder, double damp = 0.01, WorkerPool? pool = null, bool searchScales = false)
    {
        var q = new byte[Rows * GgmlTypeTraits.RowBytes(type, Columns)];
        GptqQuantizer.Quantize(type, w, Rows, Columns, (double[])h.Clone(), damp, actOrder, q, pool, searchScales);
        return q;
    }

    /// <summary>‖(W − Q) X‖² summed over samples and rows, in double.</summary>
    private static double OutputError(float[] w, float[] q, float[] x)
    {
        double sum = 0;
        for (int s = 0; s < Samples; s++)
        {
            for (int r = 0; r < Rows; r++)
            {
                double d = 0;
                for (int c = 0; c < Columns; c++)
                    d += ((double)w[r * Columns + c] - q[r * Columns + c]) * x[s * Columns + c];
                sum += d * d;
            }
        }
        return sum;
    }

    [Theory]
    [InlineData(GgmlType.Q4_0, false)]
    [InlineData(GgmlType.Q4_0, true)]
    [InlineData(GgmlType.Q4_K, false)]
    [InlineData(GgmlType.Q4_K, true)]
    [InlineData(GgmlType.Q5_0, false)]
    [InlineData(GgmlType.Q6_K, false)]
    [InlineData(GgmlType.Q6_K, true)]
    [InlineData(GgmlType.Q8_0, false)]
    public void OutputErrorIsWellBelowRoundToNearest(GgmlType type, bool actOrder)
    {
        var random = new Random(11);
        float[] x = CorrelatedInputs(random), w = Weights(random);
        double[] h = Hessian(x);
        double rtn = OutputError(w, Dequantize(type, RoundToNearest(type, w)), x);
        double gptq = OutputError(w, Dequantize(type, Gptq(type, w, h, actOrder)), x);
        Assert.True(gptq < 0.6 * rtn, $"GPTQ {gptq:G4} vs RTN {rtn:G4}");
    }

    /// <summary>
    /// The searched block scales: the output is still an ordinary block stream (every Q4_0 block decodes to its
    /// fp16 scale times a code in [−8, 7], checked here by hand) and its output error is below both RTN's and
    /// GPTQ's with the reference scales.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q5_0)]
    public void SearchedScalesLowerTheOutputError(GgmlType type)
    {
        const bool actOrder = false;
        var random = new Random(11);
        float[] x = CorrelatedInputs(random), w = Weights(random);
        double[] h = Hessian(x);
        double rtn = OutputError(w, Dequantize(type, RoundToNearest(type, w)), x);
        double plain = OutputError(w, Dequantize(type, Gptq(type, w, h, actOrder)), x);
        byte[] searched = Gptq(type, w, h, actOrder, searchScales: true);
        double search = OutputError(w, Dequantize(type, searched), x);
        Assert.True(search < 0.6 * rtn && search < plain, $"searched {search:G4}, reference scales {plain:G4}, RTN {rtn:G4}");
        if (type == GgmlType.Q4_0)
        {
            float[] decoded = Dequantize(type, searched);
            for (int b = 0; b < searched.Length / 18; b++)
            {
                float d = (float)BitConverter.ToHalf(searched, b * 18);
                Assert.True(float.IsFinite(d));
                for (int j = 0; j < 32; j++)
                {
                    int code = j < 16 ? searched[b * 18 + 2 + j] & 0xF : searched[b * 18 + 2 + j - 16] >> 4;
                    Assert.Equal(d * (code - 8), decoded[b * 32 + j]);
                }
            }
        }
    }

    /// <summary>Act-order and Q8_0 keep the reference scales (the search did not pay there): the same bytes either way.</summary>
    [Theory]
    [InlineData(GgmlType.Q4_0, true)]
    [InlineData(GgmlType.Q8_0, false)]
    public void SearchIsOnlyForQ4_0AndQ5_0InNaturalOrder(GgmlType type, bool actOrder)
    {
        var random = new Random(12);
        float[] x = CorrelatedInputs(random), w = Weights(random);
        double[] h = Hessian(x);
        Assert.Equal(Gptq(type, w, h, actOrder), Gptq(type, w, h, actOrder, searchScales: true));
    }

    /// <summary>
    /// With a diagonal H no error moves, so the column order cannot matter: act-order's permuted run must give
    /// the same bytes as the natural one (a permutation not undone would scramble them), and each block's
    /// scale is round-to-nearest's.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0)]
    [InlineData(GgmlType.Q4_K)]
    [InlineData(GgmlType.Q5_0)]
    [InlineData(GgmlType.Q6_K)]
    [InlineData(GgmlType.Q8_0)]
    public void ActOrderPermutationIsUndone(GgmlType type)
    {
        var random = new Random(5);
        float[] w = Weights(random);
        var h = new double[Columns * Columns];
        for (int i = 0; i < Columns; i++)
            h[i * Columns + i] = 0.5 + random.NextDouble() * 10;
        byte[] natural = Gptq(type, w, h, actOrder: false);
        byte[] permuted = Gptq(type, w, h, actOrder: true);
        Assert.Equal(natural, permuted);

        float[] rtn = Dequantize(type, RoundToNearest(type, w)), ours = Dequantize(type, natural);
        double e1 = 0, e2 = 0;
        for (int i = 0; i < w.Length; i++)
        {
            e1 += Math.Pow(w[i] - rtn[i], 2);
            e2 += Math.Pow(w[i] - ours[i], 2);
        }
        // the same grid, rounded to nearest on it: no worse than RTN (up to RTN's own rounding of ties/fp16 scales)
        Assert.True(e2 <= e1 * 1.01, $"{e2} vs {e1}");
    }

    [Fact]
    public void PoolGivesTheSameBytesAsOneThread()
    {
        var random = new Random(2);
        float[] x = CorrelatedInputs(random), w = Weights(random);
        double[] h = Hessian(x);
        using var pool = new WorkerPool(2);
        Assert.Equal(Gptq(GgmlType.Q4_0, w, h, true), Gptq(GgmlType.Q4_0, w, h, true, pool: pool));
    }

    [Fact]
    public void DeadColumnsAreZeroAndUnsupportedTypesRefused()
    {
        var random = new Random(9);
        float[] w = Weights(random);
        var h = new double[Columns * Columns];
        for (int i = 0; i < Columns; i++)
            h[i * Columns + i] = i < 32 ? 0 : 1;
        float[] q = Dequantize(GgmlType.Q8_0, Gptq(GgmlType.Q8_0, w, h, false));
        for (int r = 0; r < Rows; r++)
            Assert.All(q.AsSpan(r * Columns, 32).ToArray(), v => Assert.Equal(0f, v));
        Assert.Throws<NotSupportedException>(() => Gptq(GgmlType.Q5_K, w, h, false));
    }

    [Fact]
    public void UpperCholeskyFactorOfTheInverse()
    {
        var random = new Random(4);
        const int n = 7;
        var b = Enumerable.Range(0, n * n).Select(_ => random.NextDouble() - 0.5).ToArray();
        var h = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                for (int k = 0; k < n; k++)
                    h[i * n + j] += b[i * n + k] * b[j * n + k];
            }
            h[i * n + i] += 0.1;
        }
        var damped = (double[])h.Clone();
        double[] u = HessianInverse.UpperCholeskyOfInverse(damped, n, 0);
        // (UᵀU) H = I, U upper
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < i; j++)
                Assert.Equal(0, u[i * n + j]);
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int k = 0; k < n; k++)
                {
                    double inv = 0;
                    for (int m = 0; m < n; m++)
                        inv += u[m * n + i] * u[m * n + k];
                    s += inv * h[k * n + j];
                }
                Assert.Equal(i == j ? 1 : 0, s, 8);
            }
        }
    }
}
