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
    /// Argument checks of the 1 × 4 tiles (one weight row · four Q8_K activation rows <paramref name="activationStride"/>
    /// bytes apart, four results); returns the number of super-blocks.
    /// </summary>
    public static int CheckTile(string type, int blockBytes, int weightBytes, int activationLength, int activationStride, int results) =>
        CheckTile(type, blockBytes, weightBytes, activationLength, activationStride, results, 4);

    /// <summary>Argument checks of a 1 × <paramref name="tokens"/> tile; returns the number of super-blocks.</summary>
    public static int CheckTile(string type, int blockBytes, int weightBytes, int activationLength, int activationStride, int results, int tokens)
    {
        if (weightBytes % blockBytes != 0 || results < tokens)
            throw new ArgumentException($"a {type} row is whole {blockBytes}-byte blocks and {tokens} results are needed; got {weightBytes} bytes, {results} results");
        int activationBytes = weightBytes / blockBytes * Q8_K.BlockBytes;
        if (activationStride < activationBytes || activationLength < (tokens - 1L) * activationStride + activationBytes)
            throw new ArgumentException($"{tokens} Q8_K activation rows of {activationBytes} bytes, {activationStride} bytes apart, are needed");
        return weightBytes / blockBytes;
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

    /// <summary>
    /// The 256 quants of a Q4_K / Q5_K super-block unpacked to bytes, for the tiles that reuse them across tokens:
    /// chunk c's first sub-block (elements 64c..64c+31) in Lc, its second (64c+32..64c+63) in Hc.
    /// </summary>
    public readonly record struct SubBlockQuants(Vector256<byte> L0, Vector256<byte> H0, Vector256<byte> L1, Vector256<byte> H1,
        Vector256<byte> L2, Vector256<byte> H2, Vector256<byte> L3, Vector256<byte> H3);

    /// <summary>The eight sub-blocks' 6-bit scales of a Q4_K / Q5_K super-block, each in every 16-bit lane of its vector.</summary>
    public readonly record struct SubBlockScales(Vector256<short> S0, Vector256<short> S1, Vector256<short> S2, Vector256<short> S3,
        Vector256<short> S4, Vector256<short> S5, Vector256<short> S6, Vector256<short> S7)
    {
        /// <summary>From the eight scales as 16-bit values (the low half of the widened <see cref="UnpackScalesAndMins"/>).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static SubBlockScales From(Vector128<short> scales)
        {
            Vector256<byte> both = Vector256.Create(scales, scales).AsByte();
            return new(Avx2.Shuffle(both, Broadcast(0, 0)).AsInt16(), Avx2.Shuffle(both, Broadcast(1, 1)).AsInt16(),
                Avx2.Shuffle(both, Broadcast(2, 2)).AsInt16(), Avx2.Shuffle(both, Broadcast(3, 3)).AsInt16(),
                Avx2.Shuffle(both, Broadcast(4, 4)).AsInt16(), Avx2.Shuffle(both, Broadcast(5, 5)).AsInt16(),
                Avx2.Shuffle(both, Broadcast(6, 6)).AsInt16(), Avx2.Shuffle(both, Broadcast(7, 7)).AsInt16());
        }
    }

    /// <summary>
    /// Σ sc·(q·y) of a Q4_K / Q5_K super-block in ggml's eight lanes: maddubs pair sums of the unsigned quants and
    /// the activations (y at the block's 256 quants), then vpmaddwd by the sub-block scale, all exact.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector256<int> SubBlockSums(in SubBlockQuants q, in SubBlockScales sc, sbyte* y) =>
        Scaled(q.L0, y, sc.S0) + Scaled(q.H0, y + 32, sc.S1) + Scaled(q.L1, y + 64, sc.S2) + Scaled(q.H1, y + 96, sc.S3)
        + Scaled(q.L2, y + 128, sc.S4) + Scaled(q.H2, y + 160, sc.S5) + Scaled(q.L3, y + 192, sc.S6) + Scaled(q.H3, y + 224, sc.S7);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> Scaled(Vector256<byte> q, sbyte* y, Vector256<short> scale) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(y)), scale);

    // ---- AVX-512 kernels that carry two rows per zmm (row r in the low 256 bits, row r+1 in the high ones) ----

    /// <summary>A 256-bit vector in both halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<T> Both<T>(Vector256<T> v) => Vector512.Create(v, v);

    /// <summary>32 bytes of each of two rows: <paramref name="first"/>'s in the low half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<byte> RowPair(byte* first, byte* second) =>
        Avx512F.InsertVector256(Vector256.Load(first).ToVector512Unsafe(), Vector256.Load(second), 1);

    /// <summary>A 128-bit vector in all four lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<short> AllLanes(Vector128<short> v)
    {
        Vector512<long> x = v.AsInt64().ToVector256Unsafe().ToVector512Unsafe();
        return Avx512F.Shuffle4x128(x, x, 0).AsInt16();
    }

    /// <summary>32 activation quants in both 256-bit halves.</summary>
    /// <remarks>
    /// Not Avx512F.BroadcastVector256ToVector512: .NET 10's JIT folds that load into the maddubs that uses it as an
    /// embedded {1to8} broadcast of the first 8 bytes (seen here: wrong sums that changed from run to run).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe Vector512<sbyte> BothHalves(sbyte* y)
    {
        Vector512<long> v = Vector256.Load((long*)y).ToVector512Unsafe();
        return Avx512F.Shuffle4x128(v, v, 0b01_00_01_00).AsSByte();
    }

    /// <summary>Four floats, one per row, spread so that row i's value fills the i-th 256-bit half of two vectors' worth: (rows 0, 1) and (rows 2, 3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (Vector512<float>, Vector512<float>) PerRowHalves(Vector128<float> four)
    {
        Vector512<float> v = four.ToVector256Unsafe().ToVector512Unsafe();
        return (Avx512F.PermuteVar16x32(v, Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
                Avx512F.PermuteVar16x32(v, Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)));
    }
}
