using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q5_0: blocks of 32 values stored as <c>{ ggml_half d; uint8 qh[4]; uint8 qs[16]; }</c> (22 bytes).
/// Element j (0..15) takes its low 4 bits from qs[j] &amp; 0x0F, element j+16 from qs[j] &gt;&gt; 4, and element
/// j's fifth bit is bit j of qh read as a little-endian uint32; value = d * (q - 16). The quantizer is ggml's
/// quantize_row_q5_0_ref bit for bit; dots against Q8_0 activations (ggml's vec_dot_type for Q5_0) are exact
/// integers per block.
/// </summary>
public static class Q5_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 22;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q5_0", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.PreferAvx512)
            DequantizeAvx512(src, dst);
        else if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q5_0", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int j = 0; j < 16; j++)
            {
                o[j] = (Low(block, qh, j) - 16) * d;
                o[j + 16] = (High(block, qh, j) - 16) * d;
            }
        }
    }

    /// <summary>
    /// quantize_row_q5_0_impl: <paramref name="importance"/> (an imatrix's per-column weights, one per element)
    /// weighs the rounding error; without it (empty) the reference quantizer.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        if (importance.IsEmpty)
        {
            Quantize(src, dst);
            return;
        }
        RowArguments.CheckBlocks("Q5_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        LegacyImportanceQuantizer.Quantize(src, dst, importance, bits: 5, affine: false, BlockBytes);
    }

    /// <summary>ggml's quantize_row_q5_0_ref (scalar: it serves model conversion, not inference).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q5_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            // the signed value of largest magnitude, first one on ties; it maps to -16 exactly
            float amax = 0f, max = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                if (amax < MathF.Abs(x[j]))
                {
                    amax = MathF.Abs(x[j]);
                    max = x[j];
                }
            }
            float d = max / -16f;
            float id = d != 0f ? 1.0f / d : 0f;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(31, (int)(sbyte)(x[j] * id + 16.5f));
                int q1 = Math.Min(31, (int)(sbyte)(x[j + 16] * id + 16.5f));
                block[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)(q0 >> 4) << j;
                qh |= (uint)(q1 >> 4) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(block[2..], qh);
        }
    }

    /// <summary>Q5_0 weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q5_0", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.PreferAvx512)
            return DotAvx512(w, x);
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per block a float sum of (q[j]-16)*x[j] in element order, times d, added to a float total.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q5_0", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        float sum = 0f;
        for (int b = 0; b < x.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<float> xb = x.Slice(b * BlockSize, BlockSize);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
            float s = 0f;
            for (int j = 0; j < 16; j++)
                s += (Low(block, qh, j) - 16) * xb[j];
            for (int j = 0; j < 16; j++)
                s += (High(block, qh, j) - 16) * xb[j + 16];
            sum += s * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
        }
        return sum;
    }

    /// <summary>
    /// Q5_0 weights · Q8_0 activations (ggml_vec_dot_q5_0_q8_0): exact integer dot per block, times d_w*d_x,
    /// summed in float.
    /// </summary>
    public static float DotQ8(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        RowArguments.CheckBlockPair("Q5_0", BlockBytes, w.Length, "Q8_0", Q8_0.BlockBytes, xq8.Length, nameof(xq8));
        // Measured on Zen 4 (512-bit ops double-pumped): the AVX2 path is faster here.
        if (CpuPaths.CanAvx2)
            return DotQ8Avx2(w, xq8);
        return DotQ8Scalar(w, xq8);
    }

    public static float DotQ8Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = RowArguments.CheckBlockPair("Q5_0", BlockBytes, w.Length, "Q8_0", Q8_0.BlockBytes, xq8.Length, nameof(xq8));
        // the SIMD order (Q8_0.AccumulateLanes)
        Span<float> lanes = stackalloc float[F32.Lanes];
        lanes.Clear();
        Span<sbyte> q = stackalloc sbyte[BlockSize];
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq8.Slice(b * Q8_0.BlockBytes, Q8_0.BlockBytes);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(wb[2..]);
            for (int j = 0; j < 16; j++)
            {
                q[j] = (sbyte)(Low(wb, qh, j) - 16);
                q[j + 16] = (sbyte)(High(wb, qh, j) - 16);
            }
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb)) * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(xb));
            Q8_0.AccumulateLanes(lanes, q, xb[2..], d);
        }
        return F32.SumLanesHalving(lanes);
    }

    /// <summary>Unsigned 5-bit value of element j (0..15) of a block whose nibbles start at byte 6.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Low(ReadOnlySpan<byte> block, uint qh, int j) =>
        (block[6 + j] & 0x0F) | (int)(((qh >> j) & 1) << 4);

    /// <summary>Unsigned 5-bit value of element j+16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int High(ReadOnlySpan<byte> block, uint qh, int j) =>
        (block[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);

    // ---- SIMD paths: callers have checked the lengths. ----

    /// <summary>
    /// The 32 unsigned 5-bit values of a Q5_0/Q5_1 block, element j in byte j: nibbles from <paramref name="qs"/>,
    /// fifth bits from the 32-bit mask at <paramref name="qh"/> (bit j spread to byte j, then scaled to 0x10).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<byte> Unpack(byte* qh, byte* qs)
    {
        Vector128<byte> q = Vector128.Load(qs);
        Vector128<byte> mask = Vector128.Create((byte)0x0F);
        Vector256<byte> nibbles = Vector256.Create(q & mask, (q >>> 4) & mask);
        // every 128-bit lane holds the 4 mask bytes after the broadcast, so an in-lane byte shuffle can give
        // byte j the mask byte j / 8; one test bit per byte then picks bit j % 8
        Vector256<byte> spread = Avx2.Shuffle(Vector256.Create(Unsafe.ReadUnaligned<uint>(qh)).AsByte(),
            Vector256.Create(0x0000000000000000UL, 0x0101010101010101UL, 0x0202020202020202UL, 0x0303030303030303UL).AsByte());
        Vector256<byte> bit = Vector256.Create(0x8040201008040201UL).AsByte();
        return nibbles | (Vector256.Equals(spread & bit, bit) & Vector256.Create((byte)0x10));
    }

    internal static unsafe void DequantizeAvx2(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = dst.Length / BlockSize;
        fixed (byte* s0 = src)
        fixed (float* o0 = dst)
        {
            byte* s = s0;
            float* o = o0;
            for (int b = 0; b < blocks; b++, s += BlockBytes, o += BlockSize)
            {
                Vector256<float> d = Vector256.Create(HalfBits.Lookup(s));
                Vector256<sbyte> q = (Unpack(s + 2, s + 6) - Vector256.Create((byte)16)).AsSByte();
                Vector128<sbyte> lo = q.GetLower(), hi = q.GetUpper();
                (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo))).Store(o);
                (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8)))).Store(o + 8);
                (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi))).Store(o + 16);
                (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8)))).Store(o + 24);
            }
        }
    }

    internal static unsafe void DequantizeAvx512(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = dst.Length / BlockSize;
        fixed (byte* s0 = src)
        fixed (float* o0 = dst)
        {
            byte* s = s0;
            float* o = o0;
            for (int b = 0; b < blocks; b++, s += BlockBytes, o += BlockSize)
            {
                Vector512<float> d = Vector512.Create(HalfBits.Lookup(s));
                Vector256<sbyte> q = (Unpack(s + 2, s + 6) - Vector256.Create((byte)16)).AsSByte();
                (d * Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(q.GetLower()))).Store(o);
                (d * Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(q.GetUpper()))).Store(o + 16);
            }
        }
    }

    internal static unsafe float DotAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        int blocks = x.Length / BlockSize;
        Vector256<float> acc = Vector256<float>.Zero;
        fixed (byte* w0 = w)
        fixed (float* x0 = x)
        {
            byte* s = w0;
            float* xp = x0;
            for (int b = 0; b < blocks; b++, s += BlockBytes, xp += BlockSize)
            {
                Vector256<sbyte> q = (Unpack(s + 2, s + 6) - Vector256.Create((byte)16)).AsSByte();
                Vector128<sbyte> lo = q.GetLower(), hi = q.GetUpper();
                Vector256<float> sum = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo)) * Vector256.Load(xp);
                sum = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8))), Vector256.Load(xp + 8), sum);
                sum = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi)), Vector256.Load(xp + 16), sum);
                sum = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8))), Vector256.Load(xp + 24), sum);
                acc = Fma.MultiplyAdd(sum, Vector256.Create(HalfBits.Lookup(s)), acc);
            }
        }
        return Vector256.Sum(acc);
    }

    internal static unsafe float DotAvx512(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        int blocks = x.Length / BlockSize;
        Vector512<float> acc = Vector512<float>.Zero;
        fixed (byte* w0 = w)
        fixed (float* x0 = x)
        {
            byte* s = w0;
            float* xp = x0;
            for (int b = 0; b < blocks; b++, s += BlockBytes, xp += BlockSize)
            {
                Vector256<sbyte> q = (Unpack(s + 2, s + 6) - Vector256.Create((byte)16)).AsSByte();
                Vector512<float> sum = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(q.GetLower())) * Vector512.Load(xp);
                sum = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(q.GetUpper())), Vector512.Load(xp + 16), sum);
                acc = Avx512F.FusedMultiplyAdd(sum, Vector512.Create(HalfBits.Lookup(s)), acc);
            }
        }
        return Vector512.Sum(acc);
    }

    // maddubs multiplies unsigned by signed bytes: the raw 5-bit values (0..31) times the activations, minus 16
    // times the activations, is the signed dot. Pair sums stay within ±7936 and ±4096, so nothing saturates and
    // the result is exact for every activation byte, -128 included.
    internal static unsafe float DotQ8Avx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = w.Length / BlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> sixteens = Vector256.Create((byte)16);
        Vector256<short> ones = Vector256.Create((short)1);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq8)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_0.BlockBytes)
            {
                Vector256<sbyte> y = Vector256.Load((sbyte*)(px + 2));
                Vector256<short> pairs = Avx2.MultiplyAddAdjacent(Unpack(pw + 2, pw + 6), y) - Avx2.MultiplyAddAdjacent(sixteens, y);
                Vector256<int> sums = Avx2.MultiplyAddAdjacent(pairs, ones);
                float d = HalfBits.Lookup(pw) * HalfBits.Lookup(px);
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Vector256.Create(d), acc);
            }
        }
        return F32.SumLanesHalving(acc);
    }

    internal static unsafe float DotQ8Avx512(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = w.Length / BlockBytes;
        Vector512<float> acc = Vector512<float>.Zero;
        Vector512<short> sixteen = Vector512.Create((short)16);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq8)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_0.BlockBytes)
            {
                Vector512<short> wv = Avx512BW.ConvertToVector512Int16(Unpack(pw + 2, pw + 6)).AsInt16() - sixteen;
                Vector512<short> xv = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(px + 2)));
                float d = HalfBits.Lookup(pw) * HalfBits.Lookup(px);
                acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(wv, xv)), Vector512.Create(d), acc);
            }
        }
        return Vector512.Sum(acc);
    }
}
