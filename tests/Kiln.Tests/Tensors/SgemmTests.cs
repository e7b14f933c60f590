using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Tests.Tensors;

public class SgemmTests
{
    public enum Path
    {
        Scalar,
        Dispatch,
        Avx2,
        Avx512,
    }

    private delegate void Product(float[] a, int lda, float[] b, int ldb, float[] c, int ldc, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate, WorkerPool? pool);

    /// <summary>m, n, k: unit, primes, one past the tile and block sizes, a vector (n = 1), and one of each block edge.</summary>
    private static readonly (int M, int N, int K)[] Shapes =
        [(1, 1, 1), (7, 13, 5), (33, 65, 129), (100, 1, 300), (257, 511, 190)];

    public static TheoryData<int, int, int, bool, bool, bool> Cases()
    {
        var data = new TheoryData<int, int, int, bool, bool, bool>();
        foreach (var (m, n, k) in Shapes)
            foreach (bool ta in new[] { false, true })
                foreach (bool tb in new[] { false, true })
                    foreach (bool acc in new[] { false, true })
                        data.Add(m, n, k, ta, tb, acc);
        return data;
    }

    /// <summary>
    /// The scalar reference against double-precision sums: a chain of k fused multiply-adds started from c0 is off by
    /// at most γ_k (|c0| + Σ|a_p b_p|) with γ_k = k·u / (1 − k·u), u = 2⁻²⁴ (Higham, Accuracy and Stability, §3.1),
    /// so any wrong term, index or transpose shows as an error of the size of the terms themselves.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void ScalarIsWithinTheFloatBoundOfTheExactProduct(int m, int n, int k, bool ta, bool tb, bool acc)
    {
        var (a, b, c0) = Inputs(m, n, k, 11);
        float[] c = (float[])c0.Clone();
        Sgemm.MultiplyScalar(a, b, c, m, n, k, ta, tb, acc);
        double u = Math.ScaleB(1, -24);
        double gamma = k * u / (1 - k * u);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double exact = acc ? c0[i * n + j] : 0, magnitude = Math.Abs(exact);
                for (int p = 0; p < k; p++)
                {
                    double term = (double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
                    exact += term;
                    magnitude += Math.Abs(term);
                }
                double error = Math.Abs(c[i * n + j] - exact);
                Assert.True(error <= gamma * magnitude, $"C[{i},{j}] = {c[i * n + j]}, exact {exact}, error {error} > {gamma * magnitude}");
            }
        }
    }

    /// <summary>Every SIMD path sums each element in the scalar order, so the bits are equal, not just close.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryPathGivesTheScalarBits(int m, int n, int k, bool ta, bool tb, bool acc)
    {
        var (a, b, c0) = Inputs(m, n, k, 12);
        float[] expected = (float[])c0.Clone();
        Sgemm.MultiplyScalar(a, b, expected, m, n, k, ta, tb, acc);
        foreach (Path path in AvailablePaths())
        {
            float[] c = (float[])c0.Clone();
            Run(path)(a, ta ? m : k, b, tb ? k : n, c, n, m, n, k, ta, tb, acc, null);
            AssertBits(expected, c, path.ToString());
        }
    }

    /// <summary>
    /// Past every cache block (m > 384 rows, n > 512 columns, k > two 256-deep blocks), where C is reloaded between
    /// k blocks and workers' shares span several column blocks.
    /// </summary>
    [Theory]
    [InlineData(false, false, true)]
    [InlineData(true, true, false)]
    public void BlockEdgesGiveTheScalarBits(bool ta, bool tb, bool acc)
    {
        const int m = 390, n = 530, k = 520;
        var (a, b, c0) = Inputs(m, n, k, 13);
        float[] expected = (float[])c0.Clone();
        Sgemm.MultiplyScalar(a, b, expected, m, n, k, ta, tb, acc);
        using var pool = new WorkerPool(2);
        foreach (Path path in AvailablePaths())
        {
            if (path == Path.Scalar)
                continue;
            foreach (WorkerPool? p in new[] { null, pool })
            {
                float[] c = (float[])c0.Clone();
                Run(path)(a, ta ? m : k, b, tb ? k : n, c, n, m, n, k, ta, tb, acc, p);
                AssertBits(expected, c, $"{path}, {(p is null ? 1 : 2)} threads");
            }
        }
    }

    /// <summary>
    /// Split by columns (wide C), by rows (narrow C) and unevenly (3 threads): the result is the one-thread result
    /// bit for bit, because no element's k order depends on which worker computes it.
    /// </summary>
    [Theory]
    [InlineData(257, 511, 190, 2)]
    [InlineData(257, 511, 190, 3)]
    [InlineData(300, 5, 270, 2)]
    [InlineData(64, 2000, 33, 3)]
    public void ThreadsGiveTheOneThreadBits(int m, int n, int k, int threads)
    {
        var (a, b, c0) = Inputs(m, n, k, 14);
        using var pool = new WorkerPool(threads);
        foreach (Path path in AvailablePaths())
        {
            if (path == Path.Scalar)
                continue;
            foreach (bool acc in new[] { false, true })
            {
                float[] single = (float[])c0.Clone(), multi = (float[])c0.Clone();
                Run(path)(a, k, b, n, single, n, m, n, k, false, false, acc, null);
                for (int round = 0; round < 3; round++)
                {
                    c0.CopyTo(multi, 0);
                    Run(path)(a, k, b, n, multi, n, m, n, k, false, false, acc, pool);
                    AssertBits(single, multi, $"{path}, {threads} threads, round {round}");
                }
            }
        }
    }

    /// <summary>Sub-matrices of padded buffers: the product reads only the m × k / k × n parts and writes only m × n.</summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void LeadingDimensionsSelectSubMatrices(bool ta, bool tb)
    {
        const int m = 19, n = 37, k = 23, pad = 5;
        int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
        float[] a = KernelTestData.Floats((ta ? k : m) * lda, 21);
        float[] b = KernelTestData.Floats((tb ? n : k) * ldb, 22);
        float[] c0 = KernelTestData.Floats(m * ldc, 23);

        // The same product from dense copies, to compare against.
        float[] da = new float[(ta ? k : m) * (ta ? m : k)], db = new float[(tb ? n : k) * (tb ? k : n)], dc = new float[m * n];
        for (int r = 0; r < (ta ? k : m); r++)
            Array.Copy(a, r * lda, da, r * (ta ? m : k), ta ? m : k);
        for (int r = 0; r < (tb ? n : k); r++)
            Array.Copy(b, r * ldb, db, r * (tb ? k : n), tb ? k : n);
        for (int r = 0; r < m; r++)
            Array.Copy(c0, r * ldc, dc, r * n, n);
        Sgemm.MultiplyScalar(da, db, dc, m, n, k, ta, tb, accumulate: true);

        foreach (Path path in AvailablePaths())
        {
            float[] c = (float[])c0.Clone();
            Run(path)(a, lda, b, ldb, c, ldc, m, n, k, ta, tb, true, null);
            for (int r = 0; r < m; r++)
            {
                AssertBits(dc.AsSpan(r * n, n).ToArray(), c.AsSpan(r * ldc, n).ToArray(), $"{path} row {r}");
                AssertBits(c0.AsSpan(r * ldc + n, pad).ToArray(), c.AsSpan(r * ldc + n, pad).ToArray(), $"{path} padding of row {r}");
            }
        }
    }

    /// <summary>The training loop calls this thousands of times per step: once the scratch is grown, nothing is allocated.</summary>
    [Fact]
    public void WarmProductsAllocateNothing()
    {
        const int m = 70, n = 90, k = 300;
        var (a, b, c) = Inputs(m, n, k, 15);
        foreach (Path path in AvailablePaths())
        {
            if (path == Path.Scalar)
                continue;
            var run = Run(path);
            run(a, k, b, k, c, n, m, n, k, false, true, true, null);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 3; i++)
                run(a, k, b, k, c, n, m, n, k, false, true, true, null);
            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        }
    }

    [Fact]
    public void EmptySumZeroesOrKeepsC()
    {
        foreach (Path path in AvailablePaths())
        {
            float[] c = [1f, 2f, 3f, 4f, 5f, 6f];
            Run(path)([], 0, [], 3, c, 3, 2, 3, 0, false, false, true, null);
            Assert.Equal(new float[] { 1f, 2f, 3f, 4f, 5f, 6f }, c);
            Run(path)([], 0, [], 3, c, 3, 2, 3, 0, false, false, false, null);
            Assert.Equal(new float[6], c);
        }
    }

    [Fact]
    public void WrongShapesAreRejected()
    {
        float[] a = new float[6], b = new float[12], c = new float[8];
        // 2 × 3 · 3 × 4 fits exactly; one float less anywhere does not.
        Sgemm.Multiply(a, b, c, 2, 4, 3, false, false, false);
        Assert.Throws<ArgumentException>("a", () => Sgemm.Multiply(a.AsSpan(1), b, c, 2, 4, 3, false, false, false));
        Assert.Throws<ArgumentException>("b", () => Sgemm.Multiply(a, b.AsSpan(1), c, 2, 4, 3, false, false, false));
        Assert.Throws<ArgumentException>("c", () => Sgemm.Multiply(a, b, c.AsSpan(1), 2, 4, 3, false, false, false));
        // Transposed, A is stored k × m: three rows 3 apart need 8 floats.
        Assert.Throws<ArgumentException>("a", () => Sgemm.Multiply(a, 3, b, 4, c, 4, 2, 4, 3, true, false, false));
        Assert.Throws<ArgumentOutOfRangeException>("m", () => Sgemm.Multiply(a, b, c, -1, 4, 3, false, false, false));
        Assert.Throws<ArgumentOutOfRangeException>("lda", () => Sgemm.Multiply(a, 2, b, 4, c, 4, 2, 4, 3, false, false, false));
        Assert.Throws<ArgumentOutOfRangeException>("ldc", () => Sgemm.MultiplyScalar(a, 3, b, 4, c, 3, 2, 4, 3, false, false, false));
        Assert.Throws<ArgumentException>("c", () => Sgemm.Multiply(b.AsSpan(0, 6), b.AsSpan(0, 12), b.AsSpan(4, 8), 2, 4, 3, false, false, false));
    }

    private static IEnumerable<Path> AvailablePaths()
    {
        yield return Path.Scalar;
        yield return Path.Dispatch;
        if (KernelTestData.Avx2)
            yield return Path.Avx2;
        if (KernelTestData.Avx512)
            yield return Path.Avx512;
    }

    private static Product Run(Path path) => path switch
    {
        Path.Scalar => (a, lda, b, ldb, c, ldc, m, n, k, ta, tb, acc, _) => Sgemm.MultiplyScalar(a, lda, b, ldb, c, ldc, m, n, k, ta, tb, acc),
        Path.Dispatch => (a, lda, b, ldb, c, ldc, m, n, k, ta, tb, acc, pool) => Sgemm.Multiply(a, lda, b, ldb, c, ldc, m, n, k, ta, tb, acc, pool),
        Path.Avx2 => (a, lda, b, ldb, c, ldc, m, n, k, ta, tb, acc, pool) => Sgemm.MultiplyAvx2(a, lda, b, ldb, c, ldc, m, n, k, ta, tb, acc, pool),
        _ => (a, lda, b, ldb, c, ldc, m, n, k, ta, tb, acc, pool) => Sgemm.MultiplyAvx512(a, lda, b, ldb, c, ldc, m, n, k, ta, tb, acc, pool),
    };

    private static (float[] A, float[] B, float[] C) Inputs(int m, int n, int k, int seed) =>
        (KernelTestData.Floats(m * k, seed), KernelTestData.Floats(k * n, seed + 1000, 0.5f), KernelTestData.Floats(m * n, seed + 2000, 4f));

    private static void AssertBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, expected {expected[i]:R}");
        }
    }
}
