using Kiln.Benchmarking;
using Kiln.Tests.Tensors;

namespace Kiln.Tests.Benchmarking;

public class StreamingSumTests
{
    [Theory]
    [MemberData(nameof(KernelTestData.LengthData), MemberType = typeof(KernelTestData))]
    public void EveryPathEqualsTheWrappingSum(int n)
    {
        var rng = new Random(100 + n);
        var data = new uint[n];
        for (int i = 0; i < n; i++)
            data[i] = (uint)rng.NextInt64(0, 1L << 32);
        // Written out independently: a 64-bit sum reduced modulo 2^32.
        ulong wide = 0;
        foreach (uint v in data)
            wide += v;
        uint expected = (uint)(wide & 0xFFFF_FFFF);

        Assert.Equal(expected, StreamingSum.SumScalar(data));
        Assert.Equal(expected, StreamingSum.Sum(data));
        if (KernelTestData.Avx2)
            Assert.Equal(expected, StreamingSum.SumAvx2(data));
    }

    [Fact]
    public void SumWrapsAround() =>
        Assert.Equal(1u, StreamingSum.Sum([uint.MaxValue, 2u]));
}
