using Kiln.Threading;
using Kiln.Training;
using Kiln.Training.Ops;

namespace Kiln.Tests.Training;

public sealed class TrainingMatMulTests
{
    private static float[] Floats(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
    }

    /// <summary>All three products against plain triple loops in double; float sums of ≤ 70 terms of |x| ≤ 1 stay within 1e-4.</summary>
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 17, 33)]
    [InlineData(7, 40, 70)]
    [InlineData(33, 5, 9)]
    public void ProductsMatchNaiveLoops(int n, int m, int k)
    {
        float[] x = Floats(n * k, 1), w = Floats(m * k, 2), dy = Floats(n * m, 3);
        float[] y = new float[n * m], dx = Floats(n * k, 4), dw = Floats(m * k, 5);
        float[] dx0 = (float[])dx.Clone(), dw0 = (float[])dw.Clone();
        using var pool = new WorkerPool(2);
        var mm = new TrainingMatMul<float>(pool);
        mm.Forward(x, w, y, n, m, k);
        mm.BackwardInput(dy, w, dx, n, m, k);
        mm.BackwardWeight(dy, x, dw, n, m, k);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                    s += (double)x[i * k + p] * w[j * k + p];
                Assert.True(Math.Abs(s - y[i * m + j]) < 1e-4, $"y[{i},{j}]");
            }
        for (int i = 0; i < n; i++)
            for (int p = 0; p < k; p++)
            {
                double s = dx0[i * k + p];
                for (int j = 0; j < m; j++)
                    s += (double)dy[i * m + j] * w[j * k + p];
                Assert.True(Math.Abs(s - dx[i * k + p]) < 1e-4, $"dx[{i},{p}]");
            }
        for (int j = 0; j < m; j++)
            for (int p = 0; p < k; p++)
            {
                double s = dw0[j * k + p];
                for (int i = 0; i < n; i++)
                    s += (double)dy[i * m + j] * x[i * k + p];
                Assert.True(Math.Abs(s - dw[j * k + p]) < 1e-4, $"dw[{j},{p}]");
            }
    }

    /// <summary>Same bits for any thread count: checkpoints resume bit-identically on a machine with other cores.</summary>
    [Fact]
    public void ThreadCountDoesNotChangeBits()
    {
        const int n = 37, m = 45, k = 53;
        float[] x = Floats(n * k, 6), w = Floats(m * k, 7), dy = Floats(n * m, 8);
        float[] Run(WorkerPool? pool)
        {
            var mm = new TrainingMatMul<float>(pool);
            float[] y = new float[n * m], dx = new float[n * k], dw = new float[m * k];
            mm.Forward(x, w, y, n, m, k);
            mm.BackwardInput(dy, w, dx, n, m, k);
            mm.BackwardWeight(dy, x, dw, n, m, k);
            return [.. y, .. dx, .. dw];
        }
        using var pool3 = new WorkerPool(3);
        Assert.Equal(Run(null), Run(pool3));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(31)]
    [InlineData(32)]
    [InlineData(33)]
    [InlineData(100)]
    [InlineData(1029)]
    public void VectorDotAndScaledAddMatchScalarTwins(int length)
    {
        float[] x = Floats(length, 9), y = Floats(length, 10);
        Assert.Equal(DenseVector.DotScalar<float>(x, y), DenseVector.DotVector256<float>(x, y));
        double[] xd = x.Select(v => (double)v).ToArray(), yd = y.Select(v => (double)v).ToArray();
        Assert.Equal(DenseVector.DotScalar<double>(xd, yd), DenseVector.DotVector256<double>(xd, yd));
        double exact = 0;
        for (int i = 0; i < length; i++)
            exact += xd[i] * yd[i];
        Assert.True(Math.Abs(exact - DenseVector.Dot<float>(x, y)) < 1e-4);

        float[] a = (float[])y.Clone(), b = (float[])y.Clone();
        DenseVector.AddScaledScalar<float>(x, 0.37f, a);
        DenseVector.AddScaledVector256<float>(x, 0.37f, b);
        Assert.Equal(a, b);
    }
}
