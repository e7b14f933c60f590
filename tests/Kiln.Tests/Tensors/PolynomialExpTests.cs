using System.Runtime.Intrinsics;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class PolynomialExpTests
{
    private static IEnumerable<float> Inputs()
    {
        var rng = new Random(11);
        for (int i = 0; i < 20000; i++)
            yield return (float)(rng.NextDouble() * 220 - 110);
        foreach (float x in new[] { 0f, -0f, 1f, -1f, 88f, 88.5f, 89f, -87f, -88f, -100f, -103f, -104f, -150f, 126.5f, -126.5f, 200f, -200f,
                     float.Epsilon, -float.Epsilon, float.PositiveInfinity, float.NegativeInfinity })
            yield return x;
    }

    [Fact]
    public void VectorAndScalarGiveTheSameBits()
    {
        var xs = Inputs().ToArray();
        for (int i = 0; i + 8 <= xs.Length; i += 8)
        {
            Vector256<float> v = PolynomialExp.Exp(Vector256.Create(xs.AsSpan(i, 8)));
            for (int l = 0; l < 8; l++)
                Assert.Equal(BitConverter.SingleToUInt32Bits(PolynomialExp.ExpScalar(xs[i + l])), BitConverter.SingleToUInt32Bits(v[l]));
        }
    }

    [Fact]
    public void AgreesWithExpWithinTwoUlps()
    {
        foreach (float x in Inputs())
        {
            if (!float.IsFinite(x) || x > 88.3f || x < -87f)
                continue;
            float expected = (float)Math.Exp(x);
            float actual = PolynomialExp.ExpScalar(x);
            float ulp = MathF.BitIncrement(expected) - expected;
            Assert.True(Math.Abs(actual - expected) <= 2 * ulp, $"exp({x}) = {expected}, polynomial {actual}");
        }
    }

    [Fact]
    public void SaturatesAtTheEnds()
    {
        Assert.Equal(0f, PolynomialExp.ExpScalar(float.NegativeInfinity));
        Assert.Equal(0f, PolynomialExp.ExpScalar(-200f));
        Assert.Equal(float.PositiveInfinity, PolynomialExp.ExpScalar(200f));
        Assert.Equal(float.PositiveInfinity, PolynomialExp.ExpScalar(float.PositiveInfinity));
        Assert.Equal(1f, PolynomialExp.ExpScalar(0f));
        Assert.True(float.IsNaN(PolynomialExp.ExpScalar(float.NaN)));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(172)]
    [InlineData(1000)]
    public void SiluPathsGiveTheSameBitsAndAreAccurate(int n)
    {
        float[] x = KernelTestData.Floats(n, 40 + n, 8f);
        float[] vector = (float[])x.Clone(), scalar = (float[])x.Clone();
        Activations.Silu(vector);
        Activations.SiluScalar(scalar);
        Assert.Equal(scalar, vector);
        for (int i = 0; i < n; i++)
        {
            double expected = x[i] / (1 + Math.Exp(-x[i]));
            Assert.True(Math.Abs(vector[i] - expected) <= 4e-7 * Math.Abs(expected) + 1e-30, $"silu({x[i]}) = {expected}, got {vector[i]}");
        }
    }
}
