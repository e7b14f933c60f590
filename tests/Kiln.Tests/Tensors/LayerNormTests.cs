using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class LayerNormTests
{
    /// <summary>Every path gives the scalar reference's bits, and that is LayerNorm as written out in double.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(17)]
    [InlineData(64)]
    [InlineData(95)]
    [InlineData(768)]
    [InlineData(4096 + 32 + 5)]
    public void PathsGiveTheScalarBitsAndMatchAPlainLayerNorm(int n)
    {
        // an offset mean, so the centring matters
        float[] x = KernelTestData.Floats(n, 40 + n, 3f).Select(v => v + 2.5f).ToArray();
        float[] w = KernelTestData.Floats(n, 41 + n), b = KernelTestData.Floats(n, 42 + n, 0.5f);
        const float eps = 1e-5f;
        var scalar = new float[n];
        LayerNorm.ApplyScalar(x, w, b, eps, scalar);

        double mean = x.Average(v => (double)v);
        double variance = x.Sum(v => (v - mean) * (v - mean)) / n;
        double rstd = 1 / Math.Sqrt(variance + eps);
        for (int i = 0; i < n; i++)
        {
            double expected = (x[i] - mean) * rstd * w[i] + b[i];
            Assert.True(Math.Abs(scalar[i] - expected) < 1e-5 * (1 + Math.Abs(expected)), $"element {i}: {scalar[i]} vs {expected}");
        }

        var dispatched = new float[n];
        LayerNorm.Apply(x, w, b, eps, dispatched);
        Assert.Equal(scalar, dispatched);
        if (KernelTestData.Avx2)
        {
            var avx2 = new float[n];
            LayerNorm.ApplyAvx2(x, w, b, eps, avx2);
            Assert.Equal(scalar, avx2);
        }
    }

    [Fact]
    public void MismatchedLengthsAreRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => LayerNorm.Apply(new float[8], new float[8], new float[7], 1e-5f, new float[8]));
        Assert.Contains("lengths differ", e.Message);
        Assert.Throws<ArgumentException>(() => LayerNorm.Apply([], [], [], 1e-5f, []));
    }
}
