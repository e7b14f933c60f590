using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q5_K: super-blocks of 256 values stored as
/// <c>{ ggml_half d, dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]; }</c> (176 bytes). As Q4_K, with a
/// fifth bit per element: element 64c + l (l &lt; 32) adds 16 when bit 2c of qh[l] is set, element 64c + 32 + l
/// when bit 2c + 1 is. value = d*sc*q - dmin*m per sub-block of 32.
/// </summary>
public static class Q5_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 176;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q5_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    /// <summary>ggml's dequantize_row_q5_K: d1 = d*sc and m1 = dmin*m per sub-block, then d1*q - m1.</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q5_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            float dmin = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[2..]));
            ReadOnlySpan<byte> scales = block.Slice(4, 12);
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int c = 0; c < 4; c++)
            {
                (int sc0, int m0) = Q4_K.ScaleMin(scales, 2 * c);
                (int sc1, int m1) = Q4_K.ScaleMin(scales, 2 * c + 1);
                float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
                for (int l = 0; l < 32; l++)
                {
                    byte q = block[48 + 32 * c + l], h = block[16 + l];
                    o[64 * c + l] = d0 * ((q & 0x0F) + ((h >> (2 * c)) & 1) * 16) - min0;
                    o[64 * c + 32 + l] = d1 * ((q >> 4) + ((h >> (2 * c + 1)) & 1) * 16) - min1;
                }
            }
        }
    }

    /// <summary>quantize_row_q5_k_impl with an imatrix (<paramref name="importance"/>, one weight per element); empty: the reference.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        RowArguments.CheckBlocks("Q5_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (!importance.IsEmpty && importance.Length != src.Length)
            throw new ArgumentException($"importance has {importance.Length} values for a row of {src.Length}", nameof(importance));
        KQuantAffine.Quantize(src, dst, BlockBytes, nmax: 31, rmin: -0.5f, nstep: 15, importance);
    }

    /// <summary>
    /// ggml's quantize_row_q5_K_ref bit for bit: Q4_K's scheme with levels 0..31 and a shorter scale search.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q5_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        KQuantAffine.Quantize(src, dst, BlockBytes, nmax: 31, rmin: -0.5f, nstep: 15);
    }

    /// <summary>Q5_K weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q5_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per super-block a float sum of value[j]*x[j] in element order, added to a float total.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q5_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        Span<float> values = stackalloc float[BlockSize];
        float sum = 0f;
        for (int b = 0; b < x.Length / BlockSize; b++)
        {
            DequantizeScalar(w.Slice(b * BlockBytes, BlockBytes), values);
            ReadOnlySpan<float> xb = x.Slice(b * BlockSize, BlockSize);
            float s = 0f;
            for (int j = 0; j < BlockSize; j++)
                s += values[j] * xb[j];
            sum += s;
        }
        return sum;
    }

    /// <summary>
    /// Q5_K weights · Q8_K activations (ggml_vec_dot_q5_K_q8_K): per super-block the exact integers
    /// Σ sc·(q·y) and Σ m·(Σ y), times d_x·d and d_x·dmin, summed in float in ggml's lane order
    /// (<see cref="KQuantLanes"/>); every path returns the same bits.
    /// </summary>
    public static float DotQ8K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        RowArguments.CheckBlockPair("Q5_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        if (CpuPaths.CanAvx2)
            return DotQ8KAvx2(w, xq);
        return DotQ8KScalar(w, xq);
    }

    /// <summary>
    /// One weight row · four Q8_K activation rows (<paramref name="activationStride"/> bytes apart, as
    /// <see cref="Q8_K.Quantize"/> makes them): results[t] is bit-identical to <see cref="DotQ8K"/> of activation t.
    /// The 5-bit quants, the broadcast scales and the mins are unpacked once per super-block for all four tokens.
    /// </summary>
    public static void DotQ8KTile1x4(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq, int activationStride, Span<float> results)
    {
        int blocks = KQuantLanes.CheckTile("Q5_K", BlockBytes, w.Length, xq.Length, activationStride, results.Length);
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = w)
                fixed (byte* px = xq)
                fixed (float* pr = results)
                    DotQ8KTile1x4Avx2(pw, blocks, px, activationStride, pr);
            }
            return;
        }
        int activationBytes = blocks * Q8_K.BlockBytes;
        for (int t = 0; t < 4; t++)
            results[t] = DotQ8KScalar(w, xq.Slice(t * activationStride, activationBytes));
    }

    public static float DotQ8KScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = RowArguments.CheckBlockPair("Q5_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        acc.Clear();
        float summs = 0f;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq.Slice(b * Q8_K.BlockBytes, Q8_K.BlockBytes);
            ReadOnlySpan<byte> scales = wb.Slice(4, 12);
            lanes.Clear();
            int mins = 0;
            for (int c = 0; c < 4; c++)
            {
                (int sc0, int m0) = Q4_K.ScaleMin(scales, 2 * c);
                (int sc1, int m1) = Q4_K.ScaleMin(scales, 2 * c + 1);
                for (int l = 0; l < 32; l++)
                {
                    byte q = wb[48 + 32 * c + l], h = wb[16 + l];
                    int lo = (q & 0x0F) | (((h >> (2 * c)) & 1) << 4), hi = (q >> 4) | (((h >> (2 * c + 1)) & 1) << 4);
                    lanes[KQuantLanes.Lane(l)] += sc0 * lo * (sbyte)xb[Q8_K.QsOffset + 64 * c + l]
                                                + sc1 * hi * (sbyte)xb[Q8_K.QsOffset + 64 * c + 32 + l];
                }
                mins += m0 * Q4_K.Bsum32(xb, 2 * c) + m1 * Q4_K.Bsum32(xb, 2 * c + 1);
            }
            float dx = BinaryPrimitives.ReadSingleLittleEndian(xb);
            float d = dx * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb));
            float negativeDmin = -dx * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb[2..]));
            summs = MathF.FusedMultiplyAdd(negativeDmin, mins, summs);
            for (int k = 0; k < 8; k++)
                acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
        }
        return F32.SumLanesHalving(acc) + summs;
    }

    // ---- SIMD paths: callers have checked the lengths. ----

    /// <summary>
    /// The 64 five-bit quants of chunk c as two byte vectors (elements 64c..64c+31 and 64c+32..64c+63), given the
    /// qh bits already shifted right by 2c within each byte.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<byte> Low, Vector256<byte> High) Quants(Vector256<byte> q, Vector256<byte> h)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F), bit4 = Vector256.Create((byte)0x10);
        // 16-bit lane shifts: after the mask each byte keeps only bits that came from itself
        return ((q & mask) | ((h.AsUInt16() << 4).AsByte() & bit4),
                ((q.AsUInt16() >>> 4).AsByte() & mask) | ((h.AsUInt16() << 3).AsByte() & bit4));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void DequantizeBlockAvx2(byte* s, float* o)
    {
        float d = HalfBits.Lookup(s), dmin = HalfBits.Lookup(s + 2);
        Vector128<byte> sm = KQuantLanes.UnpackScalesAndMins(s + 4);
        Vector256<byte> h = Vector256.Load(s + 16);
        for (int c = 0; c < 4; c++)
        {
            (Vector256<byte> lo, Vector256<byte> hi) = Quants(Vector256.Load(s + 48 + 32 * c), h);
            Q4_K.StoreScaled(lo, d * sm.GetElement(2 * c), dmin * sm.GetElement(8 + 2 * c), o + 64 * c);
            Q4_K.StoreScaled(hi, d * sm.GetElement(2 * c + 1), dmin * sm.GetElement(9 + 2 * c), o + 64 * c + 32);
            h = (h.AsUInt16() >>> 2).AsByte();
        }
    }

    internal static unsafe void DequantizeAvx2(ReadOnlySpan<byte> src, Span<float> dst)
    {
        int blocks = dst.Length / BlockSize;
        fixed (byte* s0 = src)
        fixed (float* o0 = dst)
        {
            for (int b = 0; b < blocks; b++)
                DequantizeBlockAvx2(s0 + b * BlockBytes, o0 + b * BlockSize);
        }
    }

    internal static unsafe float DotAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        int blocks = x.Length / BlockSize;
        float* values = stackalloc float[BlockSize];
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = Vector256<float>.Zero;
        fixed (byte* w0 = w)
        fixed (float* x0 = x)
        {
            for (int b = 0; b < blocks; b++)
            {
                DequantizeBlockAvx2(w0 + b * BlockBytes, values);
                float* xp = x0 + b * BlockSize;
                for (int j = 0; j < BlockSize; j += 16)
                {
                    acc0 = Fma.MultiplyAdd(Vector256.Load(values + j), Vector256.Load(xp + j), acc0);
                    acc1 = Fma.MultiplyAdd(Vector256.Load(values + j + 8), Vector256.Load(xp + j + 8), acc1);
                }
            }
        }
        return Vector256.Sum(acc0 + acc1);
    }

    // As Q4_K with quants up to 31: maddubs pair sums stay within ±7936, no saturation. Float order as
    // ggml_vec_dot_q5_K_q8_K (AVX2): the min term is a scalar running sum (fused multiply-add, as C compilers
    // contract "summs += dmin * sum"), added after the horizontal sum.
    internal static unsafe void DotQ8KTile1x4Avx2(byte* w, int blocks, byte* xq, int stride, float* results)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        float summs0 = 0f, summs1 = 0f, summs2 = 0f, summs3 = 0f;
        byte* pw = w, px = xq;
        for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_K.BlockBytes)
        {
            Vector256<short> sm = Avx2.ConvertToVector256Int16(KQuantLanes.UnpackScalesAndMins(pw + 4));
            var sc = KQuantLanes.SubBlockScales.From(sm.GetLower());
            Vector256<byte> h = Vector256.Load(pw + 16);
            var (l0, h0) = Quants(Vector256.Load(pw + 48), h);
            h = (h.AsUInt16() >>> 2).AsByte();
            var (l1, h1) = Quants(Vector256.Load(pw + 80), h);
            h = (h.AsUInt16() >>> 2).AsByte();
            var (l2, h2) = Quants(Vector256.Load(pw + 112), h);
            h = (h.AsUInt16() >>> 2).AsByte();
            var (l3, h3) = Quants(Vector256.Load(pw + 144), h);
            var q = new KQuantLanes.SubBlockQuants(l0, h0, l1, h1, l2, h2, l3, h3);
            Vector128<short> mins = sm.GetUpper();
            float d = HalfBits.Lookup(pw), dmin = HalfBits.Lookup(pw + 2);
            TokenStep(px, in q, in sc, mins, d, dmin, ref acc0, ref summs0);
            TokenStep(px + stride, in q, in sc, mins, d, dmin, ref acc1, ref summs1);
            TokenStep(px + 2 * stride, in q, in sc, mins, d, dmin, ref acc2, ref summs2);
            TokenStep(px + 3 * stride, in q, in sc, mins, d, dmin, ref acc3, ref summs3);
        }
        results[0] = F32.SumLanesHalving(acc0) + summs0;
        results[1] = F32.SumLanesHalving(acc1) + summs1;
        results[2] = F32.SumLanesHalving(acc2) + summs2;
        results[3] = F32.SumLanesHalving(acc3) + summs3;
    }

    /// <summary>One token's super-block against an unpacked weight block: <see cref="DotQ8KAvx2"/>'s steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void TokenStep(byte* px, in KQuantLanes.SubBlockQuants q, in KQuantLanes.SubBlockScales sc, Vector128<short> mins,
        float d, float dmin, ref Vector256<float> acc, ref float summs)
    {
        float dx = Unsafe.ReadUnaligned<float>(px);
        Vector256<short> bsums = Vector256.Load((short*)(px + Q8_K.BsumsOffset));
        int m = Vector128.Sum(Sse2.MultiplyAddAdjacent(mins, Ssse3.HorizontalAdd(bsums.GetLower(), bsums.GetUpper())));
        summs = MathF.FusedMultiplyAdd(-dx * dmin, m, summs);
        Vector256<int> sumi = KQuantLanes.SubBlockSums(in q, in sc, (sbyte*)(px + Q8_K.QsOffset));
        acc = Fma.MultiplyAdd(Vector256.Create(dx * d), Avx.ConvertToVector256Single(sumi), acc);
    }

    // Not inlined into DotQ8K: there the JIT ran out of inlining budget and called this body's own helpers
    // once per super-block (seen in DOTNET_JitDisasm of the tiered and the fully optimized code alike).
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static unsafe float DotQ8KAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = w.Length / BlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        float summs = 0f;
        Vector256<byte> s0 = KQuantLanes.Broadcast(0, 0), s1 = KQuantLanes.Broadcast(1, 1);
        Vector256<byte> s2 = KQuantLanes.Broadcast(2, 2), s3 = KQuantLanes.Broadcast(3, 3);
        Vector256<byte> s4 = KQuantLanes.Broadcast(4, 4), s5 = KQuantLanes.Broadcast(5, 5);
        Vector256<byte> s6 = KQuantLanes.Broadcast(6, 6), s7 = KQuantLanes.Broadcast(7, 7);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_K.BlockBytes)
            {
                float dx = Unsafe.ReadUnaligned<float>(px);
                Vector256<short> sm = Avx2.ConvertToVector256Int16(KQuantLanes.UnpackScalesAndMins(pw + 4));
                Vector256<short> bsums = Vector256.Load((short*)(px + Q8_K.BsumsOffset));
                Vector128<short> sums32 = Ssse3.HorizontalAdd(bsums.GetLower(), bsums.GetUpper());
                int mins = Vector128.Sum(Sse2.MultiplyAddAdjacent(sm.GetUpper(), sums32));
                summs = MathF.FusedMultiplyAdd(-dx * HalfBits.Lookup(pw + 2), mins, summs);

                Vector256<byte> scales = Vector256.Create(sm.GetLower(), sm.GetLower()).AsByte();
                Vector256<byte> h = Vector256.Load(pw + 16);
                byte* q = pw + 48;
                sbyte* y = (sbyte*)(px + Q8_K.QsOffset);
                Vector256<int> sumi = Chunk(Vector256.Load(q), h, y, Avx2.Shuffle(scales, s0).AsInt16(), Avx2.Shuffle(scales, s1).AsInt16());
                h = (h.AsUInt16() >>> 2).AsByte();
                sumi += Chunk(Vector256.Load(q + 32), h, y + 64, Avx2.Shuffle(scales, s2).AsInt16(), Avx2.Shuffle(scales, s3).AsInt16());
                h = (h.AsUInt16() >>> 2).AsByte();
                sumi += Chunk(Vector256.Load(q + 64), h, y + 128, Avx2.Shuffle(scales, s4).AsInt16(), Avx2.Shuffle(scales, s5).AsInt16());
                h = (h.AsUInt16() >>> 2).AsByte();
                sumi += Chunk(Vector256.Load(q + 96), h, y + 192, Avx2.Shuffle(scales, s6).AsInt16(), Avx2.Shuffle(scales, s7).AsInt16());
                acc = Fma.MultiplyAdd(Vector256.Create(dx * HalfBits.Lookup(pw)), Avx.ConvertToVector256Single(sumi), acc);
            }
        }
        return F32.SumLanesHalving(acc) + summs;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> Chunk(Vector256<byte> q, Vector256<byte> h, sbyte* y, Vector256<short> scaleLow, Vector256<short> scaleHigh)
    {
        (Vector256<byte> ql, Vector256<byte> qh) = Quants(q, h);
        Vector256<short> lo = Avx2.MultiplyAddAdjacent(ql, Vector256.Load(y));
        Vector256<short> hi = Avx2.MultiplyAddAdjacent(qh, Vector256.Load(y + 32));
        return Avx2.MultiplyAddAdjacent(lo, scaleLow) + Avx2.MultiplyAddAdjacent(hi, scaleHigh);
    }
}
