using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class F32Tests
{
    [Theory]
    [MemberData(nameof(KernelTestData.LengthData), MemberType = typeof(KernelTestData))]
    public void DotPathsGiveTheSameBitsAndAreAccurate(int n)
    {
        float[] a = KernelTestData.Floats(n, 1 + n), b = KernelTestData.Floats(n, 2 + n, 3f);
        double[] ad = KernelTestData.Widen(a), bd = KernelTestData.Widen(b);
        float scalar = F32.DotScalar(a, b);
        KernelTestData.AssertDot(ad, bd, scalar, "scalar");
        Assert.Equal(scalar, F32.Dot(a, b));
        if (KernelTestData.Avx2)
            Assert.Equal(scalar, F32.DotAvx2(a, b));
    }

    [Theory]
    [InlineData(8)]
    [InlineData(16)]
    [InlineData(64)]
    [InlineData(172 * 8)]
    [InlineData(4096)]
    public void SingleAccumulatorPathsGiveTheSameBitsAndAreAccurate(int n)
    {
        float[] a = KernelTestData.Floats(n, 5 + n), b = KernelTestData.Floats(n, 6 + n, 2f);
        float scalar = F32.DotSingleAccumulatorScalar(a, b);
        KernelTestData.AssertDot(KernelTestData.Widen(a), KernelTestData.Widen(b), scalar, "scalar");
        Assert.Equal(scalar, F32.DotSingleAccumulator(a, b));
        if (KernelTestData.Avx2)
            Assert.Equal(scalar, F32.DotSingleAccumulatorAvx2(a, b));
    }

    [Theory]
    [InlineData(8)]
    [InlineData(64)]
    [InlineData(2048 + 8)]
    public void FourTokenDotGivesTheOneTokenBits(int n)
    {
        float[] a = KernelTestData.Floats(n, 31 + n);
        int stride = n + 3;
        float[] x = KernelTestData.Floats(4 * stride, 32 + n, 2f);
        var four = new float[4];
        F32.DotSingleAccumulator4(a, x, stride, four);
        for (int t = 0; t < 4; t++)
            Assert.Equal(F32.DotSingleAccumulatorScalar(a, x.AsSpan(t * stride, n)), four[t]);
    }

    /// <summary>The 4 × 4 tile gives every (row, token) the bits of the scalar single-accumulator dot.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    [InlineData(24)]
    [InlineData(2048 + 64)]
    public void FourByFourTileGivesTheSingleAccumulatorBits(int n)
    {
        int rowStride = n + 5, stride = n + 3;
        float[] a = KernelTestData.Floats(4 * rowStride, 33 + n);
        float[] x = KernelTestData.Floats(4 * stride, 34 + n, 2f);
        var tile = new float[16];
        F32.DotSingleAccumulator4x4(a, rowStride, n, x, stride, tile);
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 4; r++)
                Assert.Equal(F32.DotSingleAccumulatorScalar(a.AsSpan(r * rowStride, n), x.AsSpan(t * stride, n)), tile[t * 4 + r]);
        }
        Assert.Throws<ArgumentException>(() => F32.DotSingleAccumulator4x4(a, rowStride, n + 1, x, stride, tile));
    }

    /// <summary>
    /// The documented orders, written out for one 40-element row whose terms cancel so that any other order
    /// gives a different float: llama.cpp's ggml_vec_dot_f32 (AVX2) and tinyBLAS sum exactly like this.
    /// </summary>
    [Fact]
    public void OrdersAreTheDocumentedOnes()
    {
        const int n = 40;
        var a = new float[n];
        var b = new float[n];
        var rng = new Random(3);
        for (int i = 0; i < n; i++)
        {
            a[i] = (float)Math.ScaleB(rng.NextDouble() - 0.5, rng.Next(-12, 12));
            b[i] = (float)(rng.NextDouble() - 0.5);
        }

        // ggml_vec_dot_f32: four accumulators over [0, 32), (a0+a2)+(a1+a3), hadd-style lane sum, float tail
        var acc = new float[4, 8];
        for (int i = 0; i < 32; i++)
            acc[i / 8, i % 8] = MathF.FusedMultiplyAdd(a[i], b[i], acc[i / 8, i % 8]);
        var l = new float[8];
        for (int k = 0; k < 8; k++)
            l[k] = (acc[0, k] + acc[2, k]) + (acc[1, k] + acc[3, k]);
        float expected = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
        for (int i = 32; i < n; i++)
        {
            float p = a[i] * b[i];
            expected += p;
        }
        Assert.Equal(expected, F32.Dot(a, b));

        // tinyBLAS: one accumulator over the row, lanes halved
        var one = new float[8];
        for (int i = 0; i < n; i++)
            one[i % 8] = MathF.FusedMultiplyAdd(a[i], b[i], one[i % 8]);
        float tiled = ((one[0] + one[4]) + (one[2] + one[6])) + ((one[1] + one[5]) + (one[3] + one[7]));
        Assert.Equal(tiled, F32.DotSingleAccumulator(a, b));
    }

    [Fact]
    public void SmallDotIsExact()
    {
        // 1*4 + 2*5 + 3*6 = 32, exact in any summation order
        Assert.Equal(32f, F32.Dot([1f, 2f, 3f], [4f, 5f, 6f]));
        Assert.Equal(0f, F32.Dot([], []));
    }

    [Fact]
    public void BadLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => F32.Dot(new float[3], new float[4]));
        Assert.Throws<ArgumentException>(() => F32.DotSingleAccumulator(new float[12], new float[12]));
    }
}
