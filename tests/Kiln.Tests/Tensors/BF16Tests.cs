using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class BF16Tests
{
    /// <summary>
    /// Independent round-to-nearest-even to bfloat16: compare distances to the two neighbouring bfloat16 values
    /// in double (infinity counts as 2^128 for the overflow boundary), ties to the even one.
    /// </summary>
    private static ushort ReferenceFromSingle(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f))
            return (ushort)((bits >> 16) | 0x40);
        uint lower = bits & 0xFFFF0000u;
        if (lower == bits)
            return (ushort)(bits >> 16);
        uint upper = lower + 0x10000u;
        double Value(uint b) => (b & 0x7FFFFFFFu) == 0x7F800000u
            ? Math.CopySign(Math.Pow(2, 128), BitConverter.UInt32BitsToSingle(b))
            : BitConverter.UInt32BitsToSingle(b);
        double dl = Math.Abs(f - Value(lower)), du = Math.Abs(Value(upper) - f);
        if (dl < du)
            return (ushort)(lower >> 16);
        if (du < dl)
            return (ushort)(upper >> 16);
        return (ushort)(((lower >> 16) & 1) == 0 ? lower >> 16 : upper >> 16);
    }

    private static float[] Probes()
    {
        var values = new List<float>();
        for (long bits = 0; bits <= uint.MaxValue; bits += 7919)
            values.Add(BitConverter.UInt32BitsToSingle((uint)bits));
        var rng = new Random(3);
        for (int i = 0; i < 20000; i++)
        {
            // exact ties and their neighbours
            uint b = ((uint)rng.Next() << 16) | 0x8000u;
            values.Add(BitConverter.UInt32BitsToSingle(b));
            values.Add(BitConverter.UInt32BitsToSingle(b + 1));
            values.Add(BitConverter.UInt32BitsToSingle(b - 1));
        }
        values.AddRange([float.MaxValue, -float.MaxValue, float.PositiveInfinity, float.Epsilon, 1f, -0f, 3.3895314e38f]);
        return [.. values];
    }

    [Fact]
    public void QuantizeMatchesIndependentRoundingOnEveryPath()
    {
        float[] src = Probes();
        var expected = new byte[src.Length * 2];
        for (int i = 0; i < src.Length; i++)
            BinaryPrimitives.WriteUInt16LittleEndian(expected.AsSpan(2 * i), ReferenceFromSingle(src[i]));
        var actual = new byte[expected.Length];
        BF16.QuantizeScalar(src, actual);
        Assert.True(expected.AsSpan().SequenceEqual(actual), "scalar differs from reference rounding");
        if (KernelTestData.Avx2)
        {
            Array.Clear(actual);
            BF16.QuantizeAvx2(src, actual);
            Assert.True(expected.AsSpan().SequenceEqual(actual), "AVX2 differs");
        }
        if (KernelTestData.Avx512)
        {
            Array.Clear(actual);
            BF16.QuantizeAvx512(src, actual);
            Assert.True(expected.AsSpan().SequenceEqual(actual), "AVX-512 differs");
        }
        Array.Clear(actual);
        BF16.Quantize(src, actual);
        Assert.True(expected.AsSpan().SequenceEqual(actual), "dispatch differs");
    }

    [Fact]
    public void KnownConversions()
    {
        Assert.Equal(0x3F80, BF16.FromSingle(1f));
        Assert.Equal(0x3F80, BF16.FromSingle(BitConverter.UInt32BitsToSingle(0x3F808000))); // tie, even stays
        Assert.Equal(0x3F82, BF16.FromSingle(BitConverter.UInt32BitsToSingle(0x3F818000))); // tie, odd rounds up
        Assert.Equal(0x7F80, BF16.FromSingle(float.MaxValue));                              // overflows to inf
        Assert.Equal(0x0001, BF16.FromSingle(BitConverter.UInt32BitsToSingle(0x00008001))); // subnormals are kept
        Assert.Equal(0x7FC1, BF16.FromSingle(BitConverter.UInt32BitsToSingle(0x7F810000))); // sNaN quietened
        Assert.Equal(-2.5f, BF16.ToSingle(0xC020));
    }

    [Fact]
    public void DequantizePathsMatchScalar()
    {
        var src = new byte[(65536 + 5) * 2];
        for (int h = 0; h < 65536 + 5; h++)
            BinaryPrimitives.WriteUInt16LittleEndian(src.AsSpan(2 * h), (ushort)h);
        var expected = new float[src.Length / 2];
        BF16.DequantizeScalar(src, expected);
        Assert.Equal(BitConverter.UInt32BitsToSingle(0x12340000), expected[0x1234]);
        var actual = new float[expected.Length];
        if (KernelTestData.Avx2)
        {
            BF16.DequantizeAvx2(src, actual);
            Assert.Equal(Bits(expected), Bits(actual));
        }
        if (KernelTestData.Avx512)
        {
            Array.Clear(actual);
            BF16.DequantizeAvx512(src, actual);
            Assert.Equal(Bits(expected), Bits(actual));
        }
        BF16.Dequantize(src, actual);
        Assert.Equal(Bits(expected), Bits(actual));
    }

    [Theory]
    [MemberData(nameof(KernelTestData.LengthData), MemberType = typeof(KernelTestData))]
    public void DotPathsMatchExactDot(int n)
    {
        float[] wf = KernelTestData.Floats(n, 21 + n, 0.5f);
        float[] x = KernelTestData.Floats(n, 22 + n, 2f);
        var w = new byte[2 * n];
        var xb = new byte[2 * n];
        BF16.QuantizeScalar(wf, w);
        BF16.QuantizeScalar(x, xb);
        double[] wd = Decode(w), xd = KernelTestData.Widen(x), xbd = Decode(xb);

        KernelTestData.AssertDot(wd, xd, BF16.DotScalar(w, x), "scalar");
        KernelTestData.AssertDot(wd, xd, BF16.Dot(w, x), "dispatch");
        KernelTestData.AssertDot(wd, xbd, BF16.DotBF16Scalar(w, xb), "bf16 scalar");
        KernelTestData.AssertDot(wd, xbd, BF16.DotBF16(w, xb), "bf16 dispatch");
        if (KernelTestData.Avx2)
        {
            KernelTestData.AssertDot(wd, xd, BF16.DotAvx2(w, x), "avx2");
            KernelTestData.AssertDot(wd, xbd, BF16.DotBF16Avx2(w, xb), "bf16 avx2");
        }
        if (KernelTestData.Avx512)
        {
            KernelTestData.AssertDot(wd, xd, BF16.DotAvx512(w, x), "avx512");
            KernelTestData.AssertDot(wd, xbd, BF16.DotBF16Avx512(w, xb), "bf16 avx512");
        }
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => BF16.Dequantize(new byte[7], new float[3]));
        Assert.Throws<ArgumentException>(() => BF16.Dot(new byte[8], new float[5]));
        Assert.Throws<ArgumentException>(() => BF16.DotBF16(new byte[8], new byte[10]));
    }

    // independent decode: the bits are the top half of a float
    private static double[] Decode(byte[] v)
    {
        var d = new double[v.Length / 2];
        for (int i = 0; i < d.Length; i++)
            d[i] = BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(v.AsSpan(2 * i)) << 16);
        return d;
    }

    private static uint[] Bits(float[] v) => Array.ConvertAll(v, BitConverter.SingleToUInt32Bits);
}
