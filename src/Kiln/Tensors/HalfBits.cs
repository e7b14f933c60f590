using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kiln.Tensors;

/// <summary>
/// Conversions between IEEE binary16 bit patterns and float, scalar and vector, bit-identical to ggml:
/// half to float is exact (subnormals and infinities included; NaN payloads kept, signalling NaNs quietened as
/// F16C's vcvtph2ps and .NET's Half do); float to half rounds to nearest
/// even with overflow to infinity, exactly as ggml_compute_fp32_to_fp16 (and F16C's vcvtps2ph with mode 0) for
/// every non-NaN input. NaN becomes the canonical quiet NaN 0x7E00 with the input's sign, as ggml's portable path does.
/// .NET 10 exposes no F16C intrinsics, so the vector forms are built from integer and float ops.
/// </summary>
internal static class HalfBits
{
    // half exponent/mantissa shifted into float position reads as a float 2^112 too small (bias 127 vs 15);
    // one multiply restores it and also normalizes half subnormals exactly.
    private const uint TwoPow112Bits = 0x77800000;
    private const uint ShiftedMaxFinite = 0x0F7FE000; // 0x7BFF << 13: anything above was Inf/NaN in the half
    private const uint FloatExponentMask = 0x7F800000;

    // ggml's float->half: scaling by 2^112 then 2^-110 folds rounding and overflow into one float addition.
    private const uint ScaleToInfBits = 0x77800000;  // 2^112
    private const uint ScaleToZeroBits = 0x08800000; // 2^-110

    // All 65536 conversions (256 KB), as ggml keeps for CPUs without F16C: the block kernels convert one or two
    // scales per 32 elements, and a load is far cheaper there than the bit sequence below. Real scales cluster in
    // a few hundred values, so the lines touched stay in L1.
    private static readonly float[] Table = BuildTable();

    /// <summary>
    /// <see cref="Table"/>'s first element. The table lives on the pinned object heap, so the address never moves; kernels
    /// compiled before this class is initialized (AggressiveOptimization) then read one static instead of checking the
    /// class and reloading the array every block.
    /// </summary>
    internal static readonly unsafe float* TablePointer = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(Table));

    private static float[] BuildTable()
    {
        var table = GC.AllocateUninitializedArray<float>(65536, pinned: true);
        for (int h = 0; h < table.Length; h++)
            table[h] = ToSingle((ushort)h);
        return table;
    }

    /// <summary>Table lookup of <see cref="ToSingle(ushort)"/> for a little-endian half at <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Lookup(byte* p) =>
        Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(Table), (nint)Unsafe.ReadUnaligned<ushort>(p));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort h)
    {
        uint shifted = (uint)(h & 0x7FFF) << 13;
        if (shifted > ShiftedMaxFinite)
            shifted |= FloatExponentMask; // now a float Inf/NaN, which the multiply keeps (and quietens, like F16C)
        uint bits = BitConverter.SingleToUInt32Bits(
            BitConverter.UInt32BitsToSingle(shifted) * BitConverter.UInt32BitsToSingle(TwoPow112Bits));
        return BitConverter.UInt32BitsToSingle(bits | ((uint)(h & 0x8000) << 16));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FromSingle(float f)
    {
        float scaled = MathF.Abs(f) * BitConverter.UInt32BitsToSingle(ScaleToInfBits)
                       * BitConverter.UInt32BitsToSingle(ScaleToZeroBits);
        uint w = BitConverter.SingleToUInt32Bits(f);
        uint shl1 = w + w;
        uint sign = w & 0x80000000u;
        uint bias = shl1 & 0xFF000000u;
        if (bias < 0x71000000u)
            bias = 0x71000000u;
        scaled = BitConverter.UInt32BitsToSingle((bias >> 1) + 0x07800000u) + scaled;
        uint bits = BitConverter.SingleToUInt32Bits(scaled);
        uint nonSign = ((bits >> 13) & 0x7C00u) + (bits & 0x0FFFu);
        return (ushort)((sign >> 16) | (shl1 > 0xFF000000u ? 0x7E00u : nonSign));
    }

    /// <summary>2^112: what <see cref="ToSingleUnscaled(ushort)"/> leaves out of a half's value.</summary>
    public const float UnscaledFactor = 5.192296858534828e33f;

    /// <summary>
    /// A finite half's value times 2^−112, exactly: its magnitude bits moved into a float's exponent and mantissa
    /// without re-biasing (half subnormals become float subnormals), and its sign moved to bit 31. Three integer
    /// operations where <see cref="ToSingle(ushort)"/> needs a multiply and an Inf/NaN fix-up; a dot product whose
    /// other operand is pre-multiplied by 2^112 gets exactly the products of the true values. Inf/NaN halves give
    /// finite values here: callers take finite weights.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingleUnscaled(ushort h) =>
        BitConverter.Int32BitsToSingle(((short)h << 13) & UnscaledMask);

    /// <summary><see cref="ToSingleUnscaled(ushort)"/> of 8 halves, each sign-extended in a 32-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToSingleUnscaled(Vector256<int> h) => ((h << 13) & Vector256.Create(UnscaledMask)).AsSingle();

    /// <summary><see cref="ToSingleUnscaled(ushort)"/> of 16 halves, each sign-extended in a 32-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ToSingleUnscaled(Vector512<int> h) => ((h << 13) & Vector512.Create(UnscaledMask)).AsSingle();

    // A sign-extended half shifted left by 13 has the sign in bits 31..28; keeping bit 31 and bits 27..13 leaves the
    // sign and the 15 magnitude bits in place.
    private const int UnscaledMask = unchecked((int)0x8FFFE000);

    /// <summary>8 halves, each zero-extended in a 32-bit lane, to 8 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> ToSingle(Vector256<uint> h)
    {
        Vector256<int> shifted = ((h & Vector256.Create(0x7FFFu)) << 13).AsInt32();
        shifted |= Vector256.GreaterThan(shifted, Vector256.Create((int)ShiftedMaxFinite)) & Vector256.Create((int)FloatExponentMask);
        Vector256<int> bits = (shifted.AsSingle() * Vector256.Create(TwoPow112Bits).AsSingle()).AsInt32();
        Vector256<int> sign = (h << 16).AsInt32() & Vector256.Create(int.MinValue);
        return (bits | sign).AsSingle();
    }

    /// <summary>16 halves, each zero-extended in a 32-bit lane, to 16 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> ToSingle(Vector512<uint> h)
    {
        Vector512<int> shifted = ((h & Vector512.Create(0x7FFFu)) << 13).AsInt32();
        shifted |= Vector512.GreaterThan(shifted, Vector512.Create((int)ShiftedMaxFinite)) & Vector512.Create((int)FloatExponentMask);
        Vector512<int> bits = (shifted.AsSingle() * Vector512.Create(TwoPow112Bits).AsSingle()).AsInt32();
        Vector512<int> sign = (h << 16).AsInt32() & Vector512.Create(int.MinValue);
        return (bits | sign).AsSingle();
    }

    /// <summary>8 floats to 8 half bit patterns, each in the low 16 bits of a 32-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<uint> FromSingle(Vector256<float> f)
    {
        Vector256<float> scaled = Vector256.Abs(f) * Vector256.Create(ScaleToInfBits).AsSingle()
                                  * Vector256.Create(ScaleToZeroBits).AsSingle();
        Vector256<uint> w = f.AsUInt32();
        Vector256<uint> shl1 = w + w;
        Vector256<uint> sign = w & Vector256.Create(0x80000000u);
        Vector256<uint> bias = Vector256.Max(shl1 & Vector256.Create(0xFF000000u), Vector256.Create(0x71000000u));
        scaled = ((bias >> 1) + Vector256.Create(0x07800000u)).AsSingle() + scaled;
        Vector256<uint> bits = scaled.AsUInt32();
        Vector256<uint> nonSign = ((bits >> 13) & Vector256.Create(0x7C00u)) + (bits & Vector256.Create(0x0FFFu));
        Vector256<uint> isNan = Vector256.GreaterThan(shl1, Vector256.Create(0xFF000000u));
        return (sign >> 16) | Vector256.ConditionalSelect(isNan, Vector256.Create(0x7E00u), nonSign);
    }

    /// <summary>16 floats to 16 half bit patterns, each in the low 16 bits of a 32-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<uint> FromSingle(Vector512<float> f)
    {
        Vector512<float> scaled = Vector512.Abs(f) * Vector512.Create(ScaleToInfBits).AsSingle()
                                  * Vector512.Create(ScaleToZeroBits).AsSingle();
        Vector512<uint> w = f.AsUInt32();
        Vector512<uint> shl1 = w + w;
        Vector512<uint> sign = w & Vector512.Create(0x80000000u);
        Vector512<uint> bias = Vector512.Max(shl1 & Vector512.Create(0xFF000000u), Vector512.Create(0x71000000u));
        scaled = ((bias >> 1) + Vector512.Create(0x07800000u)).AsSingle() + scaled;
        Vector512<uint> bits = scaled.AsUInt32();
        Vector512<uint> nonSign = ((bits >> 13) & Vector512.Create(0x7C00u)) + (bits & Vector512.Create(0x0FFFu));
        Vector512<uint> isNan = Vector512.GreaterThan(shl1, Vector512.Create(0xFF000000u));
        return (sign >> 16) | Vector512.ConditionalSelect(isNan, Vector512.Create(0x7E00u), nonSign);
    }
}
