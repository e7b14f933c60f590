using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Kiln.Tensors;

/// <summary>
/// The vector exp that llama.cpp's CPU backend (ggml built for AVX2) uses in softmax and SiLU: a degree-5
/// polynomial after range reduction (adapted by ggml from Arm's optimized-routines; error within about 1.5 ulp),
/// with the large-|x| lanes patched up by exponent arithmetic. Kiln uses the same approximation so that its
/// attention weights and activations round as llama.cpp's do; <see cref="ExpScalar"/> is the same computation one
/// value at a time and gives identical bits.
/// </summary>
public static class PolynomialExp
{
    // Constants as bit patterns: C# has no hexadecimal float literals, and the exact values matter. Properties, not
    // static readonly fields, so that a caller compiled before this class is initialized (kiln compiles loops fully
    // optimized at their first call) still sees constants and inlines Exp.
    private static float Shift => BitConverter.UInt32BitsToSingle(0x4B400000u);      // 0x1.8p23
    private static float InvLn2 => BitConverter.UInt32BitsToSingle(0x3FB8AA3Bu);     // 0x1.715476p+0
    private static float Ln2Hi => BitConverter.UInt32BitsToSingle(0x3F317200u);      // 0x1.62e4p-1
    private static float Ln2Lo => BitConverter.UInt32BitsToSingle(0x35BFBE8Eu);      // 0x1.7f7d1cp-20
    private static float C1 => BitConverter.UInt32BitsToSingle(0x3F7FFFF6u);         // 0x1.ffffecp-1
    private static float C2 => BitConverter.UInt32BitsToSingle(0x3EFFFEDBu);         // 0x1.fffdb6p-2
    private static float C3 => BitConverter.UInt32BitsToSingle(0x3E2AAF33u);         // 0x1.555e66p-3
    private static float C4 => BitConverter.UInt32BitsToSingle(0x3D2B9F17u);         // 0x1.573e2ep-5
    private static float C5 => BitConverter.UInt32BitsToSingle(0x3C072010u);         // 0x1.0e4020p-7

    /// <summary>e^x for eight lanes. Below about −103.97 the result is 0, above about 88.38 it is +∞.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        Vector256<float> r = Vector256.Create(Shift);
        Vector256<float> z = Vector256.FusedMultiplyAdd(x, Vector256.Create(InvLn2), r);
        Vector256<float> n = z - r;
        // b = x − n·ln2, with ln2 split in two so that the reduction stays exact
        Vector256<float> b = Vector256.FusedMultiplyAdd(-n, Vector256.Create(Ln2Lo), Vector256.FusedMultiplyAdd(-n, Vector256.Create(Ln2Hi), x));
        Vector256<uint> e = Vector256.ShiftLeft(z.AsUInt32(), 23);
        Vector256<float> k = (e + Vector256.Create(1f).AsUInt32()).AsSingle();
        Vector256<float> absN = Vector256.Abs(n);
        Vector256<float> c = Vector256.GreaterThan(absN, Vector256.Create(126f));
        Vector256<float> u = b * b;
        Vector256<float> j = Vector256.FusedMultiplyAdd(
            Vector256.FusedMultiplyAdd(
                Vector256.FusedMultiplyAdd(Vector256.Create(C5), b, Vector256.Create(C4)), u,
                Vector256.FusedMultiplyAdd(Vector256.Create(C3), b, Vector256.Create(C2))),
            u, Vector256.Create(C1) * b);
        if (c.ExtractMostSignificantBits() == 0)
            return Vector256.FusedMultiplyAdd(j, k, k);

        // |n| > 126: 2^n does not fit one float exponent, so scale in two steps; |n| > 192 saturates.
        Vector256<uint> g = Vector256.LessThanOrEqual(n, Vector256<float>.Zero).AsUInt32() & Vector256.Create(0x82000000u);
        Vector256<float> s1 = (g + Vector256.Create(0x7F000000u)).AsSingle();
        Vector256<float> s2 = (e - g).AsSingle();
        Vector256<float> d = Vector256.GreaterThan(absN, Vector256.Create(192f));
        Vector256<float> scaled = Vector256.ConditionalSelect(c, Vector256.FusedMultiplyAdd(s2, j, s2) * s1, Vector256.FusedMultiplyAdd(k, j, k));
        return Vector256.ConditionalSelect(d, s1 * s1, scaled);
    }

    /// <summary><see cref="Exp(Vector256{float})"/> for one value, bit for bit.</summary>
    public static float ExpScalar(float x)
    {
        float z = MathF.FusedMultiplyAdd(x, InvLn2, Shift);
        float n = z - Shift;
        float b = MathF.FusedMultiplyAdd(-n, Ln2Lo, MathF.FusedMultiplyAdd(-n, Ln2Hi, x));
        uint e = BitConverter.SingleToUInt32Bits(z) << 23;
        float k = BitConverter.UInt32BitsToSingle(e + BitConverter.SingleToUInt32Bits(1f));
        float u = b * b;
        float j = MathF.FusedMultiplyAdd(
            MathF.FusedMultiplyAdd(MathF.FusedMultiplyAdd(C5, b, C4), u, MathF.FusedMultiplyAdd(C3, b, C2)),
            u, C1 * b);
        float absN = MathF.Abs(n);
        if (!(absN > 126f))
            return MathF.FusedMultiplyAdd(j, k, k);
        uint g = n <= 0f ? 0x82000000u : 0u;
        float s1 = BitConverter.UInt32BitsToSingle(g + 0x7F000000u);
        float s2 = BitConverter.UInt32BitsToSingle(e - g);
        if (absN > 192f)
            return s1 * s1;
        return MathF.FusedMultiplyAdd(s2, j, s2) * s1;
    }
}
