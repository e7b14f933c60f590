namespace Kiln.Distributed;

/// <summary>
/// A bfloat16 value (the top 16 bits of a float32) as communicators carry it: half the bytes of float on the wire,
/// same exponent range. Conversion from float rounds to nearest even; NaN stays NaN.
/// </summary>
public readonly struct BFloat16 : IEquatable<BFloat16>
{
    public BFloat16(ushort bits) => Bits = bits;

    public ushort Bits { get; }

    public static explicit operator float(BFloat16 value) => BitConverter.UInt32BitsToSingle((uint)value.Bits << 16);

    public static explicit operator BFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
            return new BFloat16((ushort)((bits >> 16) | 0x40)); // keep it a NaN whatever the payload
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return new BFloat16((ushort)((bits + rounding) >> 16));
    }

    public bool Equals(BFloat16 other) => Bits == other.Bits;
    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);
    public override int GetHashCode() => Bits;
    public override string ToString() => ((float)this).ToString();
}
