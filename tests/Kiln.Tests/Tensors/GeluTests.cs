using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class GeluTests
{
    /// <summary>The tanh form of GELU, in double, as GPT-2 and ggml_gelu_f32 write it.</summary>
    private static double Reference(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    [Theory]
    [MemberData(nameof(KernelTestData.LengthData), MemberType = typeof(KernelTestData))]
    public void PathsGiveTheScalarBitsAndMatchTheTanhForm(int n)
    {
        float[] x = KernelTestData.Floats(n, 50 + n, 8f);
        var scalar = (float[])x.Clone();
        Activations.GeluScalar(scalar);
        for (int i = 0; i < n; i++)
        {
            double expected = Reference(x[i]);
            Assert.True(Math.Abs(scalar[i] - expected) < 2e-6 * (1 + Math.Abs(expected)), $"gelu({x[i]}) = {scalar[i]}, expected {expected}");
        }

        var dispatched = (float[])x.Clone();
        Activations.Gelu(dispatched);
        Assert.Equal(scalar, dispatched);
        if (KernelTestData.Avx2)
        {
            var avx2 = (float[])x.Clone();
            Activations.GeluAvx2(avx2);
            Assert.Equal(scalar, avx2);
        }
    }

    [Fact]
    public void ExtremesSaturate()
    {
        float[] x = [-1000f, -30f, 0f, 30f, 1000f, -9f, 9f, -1e-30f];
        var scalar = (float[])x.Clone();
        Activations.GeluScalar(scalar);
        Assert.Equal(0f, scalar[0]);
        Assert.Equal(0f, scalar[1]);
        Assert.Equal(0f, scalar[2]);
        Assert.Equal(30f, scalar[3]);
        Assert.Equal(1000f, scalar[4]);
        Assert.True(Math.Abs(scalar[5] - Reference(-9)) < 1e-12);
        Assert.Equal(9f, scalar[6], 5);
        Assert.False(float.IsNaN(scalar[7]));
        var vector = (float[])x.Clone();
        Activations.Gelu(vector);
        Assert.Equal(scalar, vector);
    }
}
