using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q5_1: blocks of 32 values stored as <c>{ ggml_half d; ggml_half m; uint8 qh[4]; uint8 qs[16]; }</c>
/// (24 bytes). The 5-bit q of each element is laid out as in <see cref="Q5_0"/>; value = d * q + m. The
/// quantizer is ggml's quantize_row_q5_1_ref bit for bit. Dots against Q8_1 activations (ggml's vec_dot_type for
/// Q5_1) are exact integers per block; the offset term m * sum(x) comes from the activations' s field.
/// </summary>
public static class Q5_1
{
    public const int BlockSize = 32;
    public const int BlockBytes = 24;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q5_1", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.PreferAvx512)
            DequantizeAvx512(src, dst);
        else if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q5_1", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            float m = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[2..]));
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int j = 0; j < 16; j++)
            {
                o[j] = Low(block, qh, j) * d + m;
                o[j + 16] = High(block, qh, j) * d + m;
            }
        }
    }

    /// <summary>
    /// quantize_row_q5_1_impl: <paramref name="importance"/> (an imatrix's per-column weights, one per element)
    /// weighs the rounding error; without it (empty) the reference quantizer.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        if (importance.IsEmpty)
        {
            Quantize(src, dst);
            return;
        }
        RowArguments.CheckBlocks("Q5_1", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        LegacyImportanceQuantizer.Quantize(src, dst, importance, bits: 5, affine: true, BlockBytes);
    }

    /// <summary>
    /// ggml's quantize_row_q5_1_ref. Scalar only: it serves model conversion, not inference, and the reference's
    /// first-wins min/max keeps the sign of a zero minimum that a vector min would not.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q5_1", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            float min = float.MaxValue, max = -float.MaxValue;
            for (int j = 0; j < BlockSize; j++)
            {
                if (x[j] < min) min = x[j];
                if (x[j] > max) max = x[j];
            }
            float d = (max - min) / 31f;
            float id = d != 0f ? 1.0f / d : 0f;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], HalfBits.FromSingle(min));
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                // no clamp in the reference: (x - min) * id stays below 31.5, so the truncation tops out at 31
                float x0 = (x[j] - min) * id;
                float x1 = (x[j + 16] - min) * id;
                int q0 = (int)(x0 + 0.5f);
                int q1 = (int)(x1 + 0.5f);
                block[8 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
                qh |= (uint)((q0 & 0x10) >> 4) << j;
                qh |= (uint)((q1 & 0x10) >> 4) << (j + 16);
            }
            BinaryPrimitives.WriteUInt32LittleEndian(block[4..], qh);
        }
    }

    /// <summary>Q5_1 weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q5_1", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.PreferAvx512)
            return DotAvx512(w, x);
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per block float sums of q[j]*x[j] and of x[j] in element order, as d*Σqx + m*Σx.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q5_1", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        float sum = 0f;
        for (int b = 0; b < x.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<float> xb = x.Slice(b * BlockSize, BlockSize);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
            float sqx = 0f, sx = 0f;
            for (int j = 0; j < 16; j++)
            {
                sqx += Low(block, qh, j) * xb[j];
                sx += xb[j];
            }
            for (int j = 0; j < 16; j++)
            {
                sqx += High(block, qh, j) * xb[j + 16];
                sx += xb[j + 16];
            }
            sum += sqx * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block))
                   + sx * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[2..]));
        }
        return sum;
    }

    /// <summary>
    /// Q5_1 weights · Q8_1 activations (ggml_vec_dot_q5_1_q8_1): per block the exact integer Σ q_w q_x times
    /// d_w*d_x, plus m_w * s_x, summed in float.
    /// </summary>
    public static float DotQ8(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        RowArguments.CheckBlockPair("Q5_1", BlockBytes, w.Length, "Q8_1", Q8_1.BlockBytes, xq8.Length, nameof(xq8));
        // Measured on Zen 4 (512-bit ops double-pumped): the AVX2 path is faster here.
        if (CpuPaths.CanAvx2)
            return DotQ8Avx2(w, xq8);
        return DotQ8Scalar(w, xq8);
    }

    public static float DotQ8Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = RowArguments.CheckBlockPair("Q5_1", BlockBytes, w.Length, "Q8_1", Q8_1.BlockBytes, xq8.Length, nameof(xq8));
        // the SIMD order (Q8_0.AccumulateLanes); the m·s terms in their own FMA chain
        Span<float> lanes = stackalloc float[F32.Lanes];
        lanes.Clear();
        Span<sbyte> q = stackalloc sbyte[BlockSize];
        float offsets = 0f;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq8.Slice(b * Q8_1.BlockBytes, Q8_1.BlockBytes);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(wb[4..]);
            for (int j = 0; j < 16; j++)
            {
                q[j] = (sbyte)Low(wb, qh, j);
                q[j + 16] = (sbyte)High(wb, qh, j);
            }
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb)) * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(xb));
            Q8_0.AccumulateLanes(lanes, q, xb[4..], d);
            offsets = MathF.FusedMultiplyAdd(HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb[2..])),
                HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(xb[2..])), offsets);
        }
        return F32.SumLanesHalving(lanes) + offsets;
    }

    /// <summary>Unsigned 5-bit value of element j (0..15) of a block whose nibbles start at byte 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Low(ReadOnlySpan<byte> block, uint qh, int j) =>
        (block[8 + j] & 0x0F) | (int)(((qh >> j) & 1) << 4);

    /// <summary>Unsigned 5-bit value of element j+16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int High(ReadOnlySpan<byte> block, uint qh, int j) =>
        (block[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);

    // ---- SIMD paths: callers have checked the lengths. ----

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
                Vector256<float> m = Vector256.Create(HalfBits.Lookup(s + 2));
                Vector256<byte> q = Q5_0.Unpack(s + 4, s + 8);
                Vector128<byte> lo = q.GetLower(), hi = q.GetUpper();
                // q*d is exact (5 by 11 significant bits), so the fused form rounds exactly like q*d + m
                Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo)), d, m).Store(o);
                Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8))), d, m).Store(o + 8);
                Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi)), d, m).Store(o + 16);
                Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8))), d, m).Store(o + 24);
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
                Vector512<float> m = Vector512.Create(HalfBits.Lookup(s + 2));
                Vector256<byte> q = Q5_0.Unpack(s + 4, s + 8);
                Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(q.GetLower())), d, m).Store(o);
                Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(q.GetUpper())), d, m).Store(o + 16);
            }
        }
    }

    internal static unsafe float DotAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        int blocks = x.Length / BlockSize;
        Vector256<float> accD = Vector256<float>.Zero, accM = Vector256<float>.Zero;
        fixed (byte* w0 = w)
        fixed (float* x0 = x)
        {
            byte* s = w0;
            float* xp = x0;
            for (int b = 0; b < blocks; b++, s += BlockBytes, xp += BlockSize)
            {
                Vector256<byte> q = Q5_0.Unpack(s + 4, s + 8);
                Vector128<byte> lo = q.GetLower(), hi = q.GetUpper();
                Vector256<float> x0v = Vector256.Load(xp), x1v = Vector256.Load(xp + 8);
                Vector256<float> x2v = Vector256.Load(xp + 16), x3v = Vector256.Load(xp + 24);
                Vector256<float> sqx = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo)) * x0v;
                sqx = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8))), x1v, sqx);
                sqx = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi)), x2v, sqx);
                sqx = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8))), x3v, sqx);
                accD = Fma.MultiplyAdd(sqx, Vector256.Create(HalfBits.Lookup(s)), accD);
                accM = Fma.MultiplyAdd((x0v + x1v) + (x2v + x3v), Vector256.Create(HalfBits.Lookup(s + 2)), accM);
            }
        }
        return Vector256.Sum(accD + accM);
    }

    internal static unsafe float DotAvx512(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        int blocks = x.Length / BlockSize;
        Vector512<float> accD = Vector512<float>.Zero, accM = Vector512<float>.Zero;
        fixed (byte* w0 = w)
        fixed (float* x0 = x)
        {
            byte* s = w0;
            float* xp = x0;
            for (int b = 0; b < blocks; b++, s += BlockBytes, xp += BlockSize)
            {
                Vector256<byte> q = Q5_0.Unpack(s + 4, s + 8);
                Vector512<float> x0v = Vector512.Load(xp), x1v = Vector512.Load(xp + 16);
                Vector512<float> sqx = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(q.GetLower())) * x0v;
                sqx = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(q.GetUpper())), x1v, sqx);
                accD = Avx512F.FusedMultiplyAdd(sqx, Vector512.Create(HalfBits.Lookup(s)), accD);
                accM = Avx512F.FusedMultiplyAdd(x0v + x1v, Vector512.Create(HalfBits.Lookup(s + 2)), accM);
            }
        }
        return Vector512.Sum(accD + accM);
    }

    // maddubs multiplies the unsigned 5-bit values (0..31) by the signed activations; pair sums stay within
    // ±7936, so nothing saturates and the integer dot is exact for every activation byte, -128 included.
    internal static unsafe float DotQ8Avx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = w.Length / BlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        float offsets = 0f;
        Vector256<short> ones = Vector256.Create((short)1);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq8)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_1.BlockBytes)
            {
                Vector256<sbyte> y = Vector256.Load((sbyte*)(px + 4));
                Vector256<int> sums = Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Q5_0.Unpack(pw + 4, pw + 8), y), ones);
                float d = HalfBits.Lookup(pw) * HalfBits.Lookup(px);
                acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Vector256.Create(d), acc);
                offsets = MathF.FusedMultiplyAdd(HalfBits.Lookup(pw + 2), HalfBits.Lookup(px + 2), offsets); // the C compiler contracts summs += m*s
            }
        }
        return F32.SumLanesHalving(acc) + offsets;
    }

    internal static unsafe float DotQ8Avx512(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = w.Length / BlockBytes;
        Vector512<float> acc = Vector512<float>.Zero;
        float offsets = 0f;
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq8)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_1.BlockBytes)
            {
                Vector512<short> wv = Avx512BW.ConvertToVector512Int16(Q5_0.Unpack(pw + 4, pw + 8)).AsInt16();
                Vector512<short> xv = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(px + 4)));
                float d = HalfBits.Lookup(pw) * HalfBits.Lookup(px);
                acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(wv, xv)), Vector512.Create(d), acc);
                offsets += HalfBits.Lookup(pw + 2) * HalfBits.Lookup(px + 2);
            }
        }
        return Vector512.Sum(acc) + offsets;
    }
}
