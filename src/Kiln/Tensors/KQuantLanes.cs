using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml's AVX2 lane structure for the K-quant dots against Q8_K, shared by the kernels: each super-block's integer
/// sums land in eight 32-bit lanes (lane k holds bytes 4k..4k+3 of every 32-element group), are scaled into float
/// lanes by fused multiply-adds and reduced in ggml's order. Following it exactly makes the dots bit-identical to
/// llama.cpp's CPU backend, which matters more than it seems: the tiny random reference model turns one-ulp
/// differences into flipped activation roundings and log-probability changes of 0.01–0.05. The scalar twins emulate
/// the same lanes, so every path gives the same bits. Also the packed-scale unpacking and scale broadcast patterns.
/// </summary>
internal static class KQuantLanes
{
    /// <summary>The lane (0..7) of element e of a super-block.</summary>
    public static int Lane(int e) => (e & 31) >> 2;

    /// <summary>Scalar twin of <see cref="HorizontalSum(Vector128{float})"/>.</summary>
    public static float HorizontalSum4(ReadOnlySpan<float> x) => (x[0] + x[2]) + (x[1] + x[3]);

    /// <summary>The 4-lane tail of ggml's hsum_float_8 (<see cref="F32.SumLanesHalving(Vector256{float})"/>): (x0+x2) + (x1+x3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalSum(Vector128<float> x)
    {
        x += Sse.MoveHighToLow(x, x);
        return x.ToScalar() + Sse3.MoveHighAndDuplicate(x).ToScalar();
    }

    /// <summary>
    /// Q4_K / Q5_K: the 12 scale bytes as <c>{ sc0..sc7, m0..m7 }</c>, each 0..63 (ggml's get_scale_min_k4 for
    /// all eight sub-blocks at once). Bytes 0..3 hold sc0..3 and, in their top two bits, the high bits of sc4..7;
    /// bytes 4..7 the same for the mins; bytes 8..11 the low nibbles of sc4..7 (low) and m4..7 (high).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector128<byte> UnpackScalesAndMins(byte* scales)
    {
        uint a = Unsafe.ReadUnaligned<uint>(scales);
        uint b = Unsafe.ReadUnaligned<uint>(scales + 4);
        uint c = Unsafe.ReadUnaligned<uint>(scales + 8);
        const uint low6 = 0x3F3F3F3F, low4 = 0x0F0F0F0F, low2 = 0x03030303;
        return Vector128.Create(
            a & low6,
            (c & low4) | (((a >> 6) & low2) << 4),
            b & low6,
            ((c >> 4) & low4) | (((b >> 6) & low2) << 4)).AsByte();
    }

    /// <summary>
    /// Q3_K: the 12 scale bytes as sixteen 6-bit scales (0..63, still biased by 32). Bytes 0..7 carry the low
    /// nibbles (scale j in byte j % 8, high nibble for j ≥ 8); bytes 8..11 the high two bits, scale j at bit
    /// 2 * (j / 4) of byte 8 + j % 4 (ggml's kmask1/kmask2 unpacking).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector128<byte> UnpackQ3Scales(byte* scales)
    {
        uint a = Unsafe.ReadUnaligned<uint>(scales);
        uint b = Unsafe.ReadUnaligned<uint>(scales + 4);
        uint c = Unsafe.ReadUnaligned<uint>(scales + 8);
        const uint low4 = 0x0F0F0F0F, low2 = 0x03030303;
        return Vector128.Create(
            (a & low4) | ((c & low2) << 4),
            (b & low4) | (((c >> 2) & low2) << 4),
            ((a >> 4) & low4) | (((c >> 4) & low2) << 4),
            ((b >> 4) & low4) | (((c >> 6) & low2) << 4)).AsByte();
    }

    /// <summary>
    /// pshufb pattern over a vector holding eight 16-bit scales in each 128-bit half: every 16-bit lane of the
    /// low half gets scale <paramref name="low"/>, every lane of the high half scale <paramref name="high"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Broadcast(int low, int high)
    {
        ushort lo = (ushort)(2 * low | (2 * low + 1) << 8);
        ushort hi = (ushort)(2 * high | (2 * high + 1) << 8);
        return Vector256.Create(Vector128.Create(lo), Vector128.Create(hi)).AsByte();
    }
}
