using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class F32Tests
{
    [Theory]
    [MemberData(nameof(KernelTestData.LengthData), MemberType = typeof(KernelTestData))]
    public void DotPathsMatchExactDot(int n)
    {
        float[] a = KernelTestData.Floats(n, 1 + n), b = KernelTestData.Floats(n, 2 + n, 3f);
        double[] ad = KernelTestData.Widen(a), bd = KernelTestData.Widen(b);
        KernelTestData.AssertDot(ad, bd, F32.DotScalar(a, b), "scalar");
        KernelTestData.AssertDot(ad, bd, F32.Dot(a, b), "dispatch");
        if (KernelTestData.Avx2)
            KernelTestData.AssertDot(ad, bd, F32.DotAvx2(a, b), "avx2");
        if (KernelTestData.Avx512)
            KernelTestData.AssertDot(ad, bd, F32.DotAvx512(a, b), "avx512");
    }

    [Fact]
    public void SmallDotIsExact()
    {
        // 1*4 + 2*5 + 3*6 = 32, exact in any summation order
        Assert.Equal(32f, F32.Dot([1f, 2f, 3f], [4f, 5f, 6f]));
        Assert.Equal(0f, F32.Dot([], []));
    }

    [Fact]
    public void LengthMismatchThrows() =>
        Assert.Throws<ArgumentException>(() => F32.Dot(new float[3], new float[4]));
}
