using System.Buffers.Binary;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class F16Tests
{
    private static byte[] AllHalves()
    {
        var bytes = new byte[65536 * 2 + 6]; // 65539 elements: not a multiple of any vector width
        for (int h = 0; h < 65536 + 3; h++)
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * h), (ushort)(h * 7919));
        return bytes;
    }

    [Fact]
    public void DequantizePathsMatchScalarOnEveryHalf()
    {
        byte[] src = AllHalves();
        var expected = new float[src.Length / 2];
        F16.DequantizeScalar(src, expected);
        for (int i = 0; i < expected.Length; i++)
            Assert.Equal(BitConverter.SingleToUInt32Bits((float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(src.AsSpan(2 * i)))),
                         BitConverter.SingleToUInt32Bits(expected[i]));
        var actual = new float[expected.Length];
        if (KernelTestData.Avx2)
        {
            F16.DequantizeAvx2(src, actual);
            Assert.Equal(Bits(expected), Bits(actual));
        }
        if (KernelTestData.Avx512)
        {
            Array.Clear(actual);
            F16.DequantizeAvx512(src, actual);
            Assert.Equal(Bits(expected), Bits(actual));
        }
        F16.Dequantize(src, actual);
        Assert.Equal(Bits(expected), Bits(actual));
    }

    [Fact]
    public void QuantizePathsMatchScalarAtEveryRoundingBoundary()
    {
        float[] src = HalfBitsTests.RoundingProbes();
        var expected = new byte[src.Length * 2];
        F16.QuantizeScalar(src, expected);
        var actual = new byte[expected.Length];
        if (KernelTestData.Avx2)
        {
            F16.QuantizeAvx2(src, actual);
            Assert.True(expected.AsSpan().SequenceEqual(actual), "AVX2 quantize differs from scalar");
        }
        if (KernelTestData.Avx512)
        {
            Array.Clear(actual);
            F16.QuantizeAvx512(src, actual);
            Assert.True(expected.AsSpan().SequenceEqual(actual), "AVX-512 quantize differs from scalar");
        }
        Array.Clear(actual);
        F16.Quantize(src, actual);
        Assert.True(expected.AsSpan().SequenceEqual(actual));
    }

    [Theory]
    [MemberData(nameof(KernelTestData.LengthData), MemberType = typeof(KernelTestData))]
    public void DotPathsGiveTheSameBitsAndAreAccurate(int n)
    {
        float[] wf = KernelTestData.Floats(n, 11 + n, 0.5f);
        float[] x = KernelTestData.Floats(n, 12 + n, 2f);
        var w = new byte[2 * n];
        F16.QuantizeScalar(wf, w);
        var xr = new float[n];
        F16.RoundActivations(x, xr);
        double[] wd = Decode(w), xd = KernelTestData.Widen(x), xrd = KernelTestData.Widen(xr);

        float scalar = F16.DotScalar(w, x);
        KernelTestData.AssertDot(wd, xd, scalar, "scalar");
        Assert.Equal(scalar, F16.Dot(w, x));
        KernelTestData.AssertDot(wd, xrd, F16.Dot(w, xr), "rounded activations");
        if (KernelTestData.Avx2)
            Assert.Equal(scalar, F16.DotAvx2(w, x));
        if (KernelTestData.Avx512)
            Assert.Equal(scalar, F16.DotAvx512(w, x));
        if (n % 8 == 0)
        {
            float single = F16.DotSingleAccumulatorScalar(w, xr);
            KernelTestData.AssertDot(wd, xrd, single, "single accumulator");
            Assert.Equal(single, F16.DotSingleAccumulator(w, xr));
            if (KernelTestData.Avx2)
                Assert.Equal(single, F16.DotSingleAccumulatorAvx2(w, xr));
        }
    }

    /// <summary>
    /// The pre-scaled dot gives <see cref="F16.Dot"/>'s bits on every path, for every weight value: finite ones
    /// (subnormals and negative zero included) take the fast integer conversion, and a row holding Inf or NaN
    /// anywhere (in the vector part or the tail) must still give Dot's result.
    /// </summary>
    [Theory]
    [MemberData(nameof(KernelTestData.LengthData), MemberType = typeof(KernelTestData))]
    public void PrescaledDotGivesTheDotBits(int n)
    {
        Assert.True(Math.ScaleB(1, 112) == HalfBits.UnscaledFactor, "UnscaledFactor is not 2^112");
        float[] x = KernelTestData.Floats(n, 14 + n, 2f);
        var xr = new float[n];
        F16.RoundActivations(x, xr);
        var rng = new Random(15 + n);
        var w = new byte[2 * n];
        rng.NextBytes(w); // every bit pattern: subnormals, ±0, large values, Inf and NaN
        for (int i = 0; i < n; i++)
        {
            if ((w[2 * i + 1] & 0x7C) == 0x7C)
                w[2 * i + 1] &= 0xBF; // finite first
        }
        for (int round = 0; round < 3; round++)
        {
            if (round == 1 && n > 0)
                w[2 * (n - 1) + 1] = 0x7C; // Inf in the last element (the tail unless n % 32 == 0)
            if (round == 2 && n > 0)
                w[1] = 0xFE; // NaN at the first
            float expected = F16.Dot(w, xr);
            var xs = (float[])xr.Clone();
            F16.PrescaleActivations(xs);
            AssertSameFloat(expected, F16.DotPrescaledScalar(w, xs));
            AssertSameFloat(expected, F16.DotPrescaled(w, xs));
            if (KernelTestData.Avx2)
                AssertSameFloat(expected, F16.DotPrescaledAvx2(w, xs));
            if (KernelTestData.Avx512)
                AssertSameFloat(expected, F16.DotPrescaledAvx512(w, xs));
        }
    }

    private static void AssertSameFloat(float expected, float actual)
    {
        if (float.IsNaN(expected))
            Assert.True(float.IsNaN(actual), $"expected NaN, got {actual}");
        else
            Assert.Equal(expected, actual);
    }

    /// <summary>Rounded activations are exactly the F16 values llama.cpp converts activations to, as floats.</summary>
    [Theory]
    [MemberData(nameof(KernelTestData.LengthData), MemberType = typeof(KernelTestData))]
    public void RoundedActivationsAreTheHalfValues(int n)
    {
        float[] x = KernelTestData.Floats(n, 13 + n, 300f);
        var rounded = new float[n];
        F16.RoundActivations(x, rounded);
        for (int i = 0; i < n; i++)
            Assert.Equal((float)(Half)x[i], rounded[i]);
    }

    [Fact]
    public void InfinityInWeightsPropagates()
    {
        var w = new byte[128];
        w[2 * 37] = 0x00;
        w[2 * 37 + 1] = 0x7C; // +inf at element 37
        float[] x = KernelTestData.Floats(32, 5);
        x[37 % 32] = 1f;
        float[] xs = [.. x, .. x];
        Assert.Equal(float.PositiveInfinity, F16.Dot(w, xs));
        Assert.Equal(float.PositiveInfinity, F16.DotScalar(w, xs));
    }

    [Fact]
    public void WrongLengthsThrow()
    {
        Assert.Throws<ArgumentException>(() => F16.Dequantize(new byte[10], new float[4]));
        Assert.Throws<ArgumentException>(() => F16.Quantize(new float[4], new byte[9]));
        Assert.Throws<ArgumentException>(() => F16.Dot(new byte[8], new float[3]));
        Assert.Throws<ArgumentException>(() => F16.DotSingleAccumulator(new byte[24], new float[12]));
    }

    private static double[] Decode(byte[] halves)
    {
        var v = new double[halves.Length / 2];
        for (int i = 0; i < v.Length; i++)
            v[i] = KernelTestData.HalfAt(halves.AsSpan(2 * i));
        return v;
    }

    private static uint[] Bits(float[] v) => Array.ConvertAll(v, BitConverter.SingleToUInt32Bits);
}
