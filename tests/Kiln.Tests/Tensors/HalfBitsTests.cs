using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class HalfBitsTests
{
    [Fact]
    public void EveryHalfConvertsExactlyAsDotNetHalf()
    {
        for (int h = 0; h < 65536; h++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float actual = HalfBits.ToSingle((ushort)h);
            Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(actual),
                $"half 0x{h:X4}: expected {expected} got {actual}");
        }
    }

    [Fact]
    public void HalfOneAndSubnormalsHaveKnownValues()
    {
        Assert.Equal(1f, HalfBits.ToSingle(0x3C00));
        Assert.Equal(-2f, HalfBits.ToSingle(0xC000));
        Assert.Equal(65504f, HalfBits.ToSingle(0x7BFF));
        Assert.Equal(MathF.Pow(2, -24), HalfBits.ToSingle(0x0001));
        Assert.Equal(MathF.Pow(2, -14) - MathF.Pow(2, -24), HalfBits.ToSingle(0x03FF));
        Assert.Equal(float.PositiveInfinity, HalfBits.ToSingle(0x7C00));
        Assert.Equal(float.NegativeInfinity, HalfBits.ToSingle(0xFC00));
        Assert.True(float.IsNaN(HalfBits.ToSingle(0x7E00)));
    }

    /// <summary>Floats at and around every rounding boundary of binary16, plus a sweep of all bit patterns.</summary>
    internal static float[] RoundingProbes()
    {
        var values = new List<float>();
        for (int h = 0; h < 0x7C00; h++)
        {
            float lo = (float)BitConverter.UInt16BitsToHalf((ushort)h);
            float hi = h + 1 == 0x7C00 ? 65536f : (float)BitConverter.UInt16BitsToHalf((ushort)(h + 1));
            float mid = (lo + hi) / 2; // exact in float: halves have 11 significant bits
            foreach (float v in new[] { lo, mid, MathF.BitDecrement(mid), MathF.BitIncrement(mid) })
            {
                values.Add(v);
                values.Add(-v);
            }
        }
        for (long bits = 0; bits <= uint.MaxValue; bits += 9973)
            values.Add(BitConverter.UInt32BitsToSingle((uint)bits));
        values.AddRange([float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.Epsilon, -0f, 1e-8f, 65520f, 65519.996f]);
        return [.. values];
    }

    [Fact]
    public void FloatToHalfRoundsLikeDotNetHalfForEveryNonNaN()
    {
        foreach (float f in RoundingProbes())
        {
            ushort actual = HalfBits.FromSingle(f);
            if (float.IsNaN(f))
            {
                Assert.Equal(BitConverter.SingleToUInt32Bits(f) >> 31 == 1 ? 0xFE00 : 0x7E00, actual);
                continue;
            }
            ushort expected = BitConverter.HalfToUInt16Bits((Half)f);
            Assert.True(expected == actual, $"{f:R} (0x{BitConverter.SingleToUInt32Bits(f):X8}): expected 0x{expected:X4} got 0x{actual:X4}");
        }
    }

    [Fact]
    public void FloatToHalfKnownCases()
    {
        Assert.Equal(0x3C00, HalfBits.FromSingle(1f));
        Assert.Equal(0x7BFF, HalfBits.FromSingle(65504f));
        Assert.Equal(0x7BFF, HalfBits.FromSingle(65519.99f)); // below the midpoint to 65536
        Assert.Equal(0x7C00, HalfBits.FromSingle(65520f));    // the tie rounds to even: infinity
        Assert.Equal(0x0001, HalfBits.FromSingle(MathF.Pow(2, -24)));
        Assert.Equal(0x0000, HalfBits.FromSingle(MathF.Pow(2, -25)));        // tie to even: zero
        Assert.Equal(0x0002, HalfBits.FromSingle(3 * MathF.Pow(2, -25)));    // tie to even: 2
        Assert.Equal(0x8000, HalfBits.FromSingle(-0f));
        Assert.Equal(0x7E00, HalfBits.FromSingle(BitConverter.UInt32BitsToSingle(0x7FC00000)));
        Assert.Equal(0xFE00, HalfBits.FromSingle(BitConverter.UInt32BitsToSingle(0xFF800001))); // signalling NaN, quietened
    }
}
