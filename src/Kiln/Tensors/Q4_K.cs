using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q4_K: super-blocks of 256 values stored as <c>{ ggml_half d, dmin; uint8 scales[12]; uint8 qs[128]; }</c>
/// (144 bytes): eight sub-blocks of 32, each with a 6-bit scale sc and min m (packed in scales, see
/// <see cref="KQuantLanes.UnpackScalesAndMins"/>). Element 64c + l (l &lt; 32) is the low nibble of qs[32c + l]
/// in sub-block 2c, element 64c + 32 + l its high nibble in sub-block 2c + 1; value = d*sc*q - dmin*m.
/// Dots run against <see cref="Q8_K"/> activations as ggml_vec_dot_q4_K_q8_K does: exact integer sums per
/// sub-block, the min term from the activations' bsums.
/// </summary>
public static class Q4_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 144;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q4_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    /// <summary>ggml's dequantize_row_q4_K: d1 = d*sc and m1 = dmin*m per sub-block, then d1*q - m1.</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q4_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            float dmin = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[2..]));
            ReadOnlySpan<byte> scales = block.Slice(4, 12);
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int c = 0; c < 4; c++)
            {
                (int sc0, int m0) = ScaleMin(scales, 2 * c);
                (int sc1, int m1) = ScaleMin(scales, 2 * c + 1);
                float d0 = d * sc0, min0 = dmin * m0, d1 = d * sc1, min1 = dmin * m1;
                for (int l = 0; l < 32; l++)
                {
                    byte q = block[16 + 32 * c + l];
                    o[64 * c + l] = d0 * (q & 0x0F) - min0;
                    o[64 * c + 32 + l] = d1 * (q >> 4) - min1;
                }
            }
        }
    }

    /// <summary>quantize_row_q4_k_impl with an imatrix (<paramref name="importance"/>, one weight per element); empty: the reference.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        RowArguments.CheckBlocks("Q4_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (!importance.IsEmpty && importance.Length != src.Length)
            throw new ArgumentException($"importance has {importance.Length} values for a row of {src.Length}", nameof(importance));
        KQuantAffine.Quantize(src, dst, BlockBytes, nmax: 15, rmin: -1f, nstep: 20, importance);
    }

    /// <summary>
    /// ggml's quantize_row_q4_K_ref bit for bit: per sub-block of 32 an affine fit (levels 0..15) weighted by
    /// rms + |x|, the eight scales and mins then quantized to 6 bits against the largest, and the levels
    /// recomputed from the stored (fp16 × 6-bit) scales so they match what dequantization will use.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q4_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        KQuantAffine.Quantize(src, dst, BlockBytes, nmax: 15, rmin: -1f, nstep: 20);
    }

    /// <summary>Q4_K weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q4_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per super-block a float sum of value[j]*x[j] in element order, added to a float total.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q4_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
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
    /// Q4_K weights · Q8_K activations (ggml_vec_dot_q4_K_q8_K): per super-block the exact integers
    /// Σ sc·(q·y) and Σ m·(Σ y), times d_x·d and d_x·dmin, summed in float in ggml's lane order
    /// (<see cref="KQuantLanes"/>); every path returns the same bits.
    /// </summary>
    public static float DotQ8K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        RowArguments.CheckBlockPair("Q4_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        // Measured on Zen 4: a 512-bit variant with the same lanes (64 elements per maddubs, vpermw scale
        // broadcast, halves folded per super-block) was 14% slower than this AVX2 path.
        if (CpuPaths.CanAvx2)
            return DotQ8KAvx2(w, xq);
        return DotQ8KScalar(w, xq);
    }

    public static float DotQ8KScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = RowArguments.CheckBlockPair("Q4_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8], accMin = stackalloc float[4];
        acc.Clear();
        accMin.Clear();
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq.Slice(b * Q8_K.BlockBytes, Q8_K.BlockBytes);
            ReadOnlySpan<byte> scales = wb.Slice(4, 12);
            lanes.Clear();
            for (int c = 0; c < 4; c++)
            {
                (int sc0, _) = ScaleMin(scales, 2 * c);
                (int sc1, _) = ScaleMin(scales, 2 * c + 1);
                for (int l = 0; l < 32; l++)
                {
                    byte q = wb[16 + 32 * c + l];
                    lanes[KQuantLanes.Lane(l)] += sc0 * (q & 0x0F) * (sbyte)xb[Q8_K.QsOffset + 64 * c + l]
                                                + sc1 * (q >> 4) * (sbyte)xb[Q8_K.QsOffset + 64 * c + 32 + l];
                }
            }
            float dx = BinaryPrimitives.ReadSingleLittleEndian(xb);
            float d = dx * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb));
            float negativeDmin = -dx * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb[2..]));
            for (int k = 0; k < 8; k++)
                acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
            for (int k = 0; k < 4; k++)
            {
                int mins = ScaleMin(scales, 2 * k).Min * Bsum32(xb, 2 * k) + ScaleMin(scales, 2 * k + 1).Min * Bsum32(xb, 2 * k + 1);
                accMin[k] = MathF.FusedMultiplyAdd(negativeDmin, mins, accMin[k]);
            }
        }
        return F32.SumLanesHalving(acc) + KQuantLanes.HorizontalSum4(accMin);
    }

    /// <summary>
    /// One weight row · four Q8_K activation rows (<paramref name="activationStride"/> bytes apart, as
    /// <see cref="Q8_K.Quantize"/> makes them): results[t] is bit-identical to <see cref="DotQ8K"/> of activation t.
    /// The nibbles, the broadcast sub-block scales and the mins are unpacked once per super-block and serve all four
    /// tokens, which is most of the one-row kernel's work besides the multiplies.
    /// </summary>
    public static void DotQ8KTile1x4(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq, int activationStride, Span<float> results)
    {
        int blocks = KQuantLanes.CheckTile("Q4_K", BlockBytes, w.Length, xq.Length, activationStride, results.Length);
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

    /// <summary>
    /// Four weight rows (<paramref name="rowBytes"/> apart) · one Q8_K activation row, the single-token product:
    /// results[i] is bit-identical to <see cref="DotQ8K"/> of row i. With AVX-512 each zmm carries two rows, every
    /// 256-bit half doing exactly the one-row kernel's operations, so one instruction serves two rows; the activation
    /// block and its bsums are loaded once for the four rows.
    /// </summary>
    public static void DotQ8KRows4(ReadOnlySpan<byte> w, int rowBytes, ReadOnlySpan<byte> xq, Span<float> results)
    {
        int blocks = RowArguments.CheckBlockPair("Q4_K", BlockBytes, rowBytes, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        if (rowBytes <= 0 || w.Length < 4L * rowBytes || results.Length < 4)
            throw new ArgumentException($"four rows of {rowBytes} bytes and four results are needed", nameof(w));
        if (CpuPaths.CanAvx512)
        {
            unsafe
            {
                fixed (byte* pw = w)
                fixed (byte* px = xq)
                fixed (float* pr = results)
                    DotQ8KRows4Avx512(pw, rowBytes, px, blocks, pr);
            }
            return;
        }
        for (int r = 0; r < 4; r++)
            results[r] = DotQ8K(w.Slice(r * rowBytes, rowBytes), xq);
    }

    /// <summary>ggml's get_scale_min_k4: scale and min of sub-block j (0..7) from the 12 packed bytes.</summary>
    internal static (int Scale, int Min) ScaleMin(ReadOnlySpan<byte> q, int j) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    /// <summary>Sum of the 32 activation quants of sub-block j, from the two bsums covering it.</summary>
    internal static int Bsum32(ReadOnlySpan<byte> q8k, int j) =>
        BinaryPrimitives.ReadInt16LittleEndian(q8k[(Q8_K.BsumsOffset + 4 * j)..])
        + BinaryPrimitives.ReadInt16LittleEndian(q8k[(Q8_K.BsumsOffset + 4 * j + 2)..]);

    // ---- SIMD paths: callers have checked the lengths. ----

    /// <summary>One super-block to 256 floats with the scalar path's operations (a multiply, then a subtract).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void DequantizeBlockAvx2(byte* s, float* o)
    {
        float d = HalfBits.Lookup(s), dmin = HalfBits.Lookup(s + 2);
        Vector128<byte> sm = KQuantLanes.UnpackScalesAndMins(s + 4);
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        for (int c = 0; c < 4; c++)
        {
            Vector256<byte> q = Vector256.Load(s + 16 + 32 * c);
            StoreScaled(q & mask, d * sm.GetElement(2 * c), dmin * sm.GetElement(8 + 2 * c), o + 64 * c);
            StoreScaled((q.AsUInt16() >>> 4).AsByte() & mask, d * sm.GetElement(2 * c + 1), dmin * sm.GetElement(9 + 2 * c), o + 64 * c + 32);
        }
    }

    /// <summary>32 unsigned quants as scale*q - offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void StoreScaled(Vector256<byte> q, float scale, float offset, float* o)
    {
        Vector256<float> vs = Vector256.Create(scale), vo = Vector256.Create(offset);
        Vector128<byte> lo = q.GetLower(), hi = q.GetUpper();
        (vs * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo)) - vo).Store(o);
        (vs * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8))) - vo).Store(o + 8);
        (vs * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi)) - vo).Store(o + 16);
        (vs * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8))) - vo).Store(o + 24);
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

    // maddubs multiplies the unsigned nibbles by the signed activations: pair sums stay within ±3840, then
    // vpmaddwd by the 6-bit scale gives exact 32-bit sub-block sums. The min term needs only the activations'
    // sums, which Q8_K carries per 16 (bsums). Lanes and float order as ggml_vec_dot_q4_K_q8_K (AVX2): the min
    // term in its own 4-lane accumulator with -d_x·dmin, added after both horizontal sums.
    internal static unsafe float DotQ8KAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = w.Length / BlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        Vector128<float> accMin = Vector128<float>.Zero;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
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
                Vector128<int> mins = Sse2.MultiplyAddAdjacent(sm.GetUpper(), sums32);
                accMin = Fma.MultiplyAdd(Vector128.Create(-dx * HalfBits.Lookup(pw + 2)), Sse2.ConvertToVector128Single(mins), accMin);

                Vector256<byte> scales = Vector256.Create(sm.GetLower(), sm.GetLower()).AsByte();
                byte* q = pw + 16;
                sbyte* y = (sbyte*)(px + Q8_K.QsOffset);
                Vector256<int> sumi = Chunk(Vector256.Load(q), y, mask, Avx2.Shuffle(scales, s0).AsInt16(), Avx2.Shuffle(scales, s1).AsInt16());
                sumi += Chunk(Vector256.Load(q + 32), y + 64, mask, Avx2.Shuffle(scales, s2).AsInt16(), Avx2.Shuffle(scales, s3).AsInt16());
                sumi += Chunk(Vector256.Load(q + 64), y + 128, mask, Avx2.Shuffle(scales, s4).AsInt16(), Avx2.Shuffle(scales, s5).AsInt16());
                sumi += Chunk(Vector256.Load(q + 96), y + 192, mask, Avx2.Shuffle(scales, s6).AsInt16(), Avx2.Shuffle(scales, s7).AsInt16());
                acc = Fma.MultiplyAdd(Vector256.Create(dx * HalfBits.Lookup(pw)), Avx.ConvertToVector256Single(sumi), acc);
            }
        }
        return F32.SumLanesHalving(acc) + KQuantLanes.HorizontalSum(accMin);
    }

    internal static unsafe void DotQ8KTile1x4Avx2(byte* w, int blocks, byte* xq, int stride, float* results)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector128<float> min0 = Vector128<float>.Zero, min1 = min0, min2 = min0, min3 = min0;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        byte* pw = w, px = xq;
        for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_K.BlockBytes)
        {
            Vector256<short> sm = Avx2.ConvertToVector256Int16(KQuantLanes.UnpackScalesAndMins(pw + 4));
            var sc = KQuantLanes.SubBlockScales.From(sm.GetLower());
            Vector256<byte> q0 = Vector256.Load(pw + 16), q1 = Vector256.Load(pw + 48), q2 = Vector256.Load(pw + 80), q3 = Vector256.Load(pw + 112);
            var n = new KQuantLanes.SubBlockQuants(q0 & mask, (q0.AsUInt16() >>> 4).AsByte() & mask, q1 & mask, (q1.AsUInt16() >>> 4).AsByte() & mask,
                q2 & mask, (q2.AsUInt16() >>> 4).AsByte() & mask, q3 & mask, (q3.AsUInt16() >>> 4).AsByte() & mask);
            Vector128<short> mins = sm.GetUpper();
            // d·d_x and -d_x·dmin as one vector multiply of broadcasts (the same products: IEEE multiplication
            // commutes and rounds symmetrically in sign)
            Vector256<float> d = Vector256.Create(HalfBits.Lookup(pw));
            Vector128<float> negativeDmin = Vector128.Create(-HalfBits.Lookup(pw + 2));
            TokenStep(px, in n, in sc, mins, d, negativeDmin, ref acc0, ref min0);
            TokenStep(px + stride, in n, in sc, mins, d, negativeDmin, ref acc1, ref min1);
            TokenStep(px + 2 * stride, in n, in sc, mins, d, negativeDmin, ref acc2, ref min2);
            TokenStep(px + 3 * stride, in n, in sc, mins, d, negativeDmin, ref acc3, ref min3);
        }
        results[0] = F32.SumLanesHalving(acc0) + KQuantLanes.HorizontalSum(min0);
        results[1] = F32.SumLanesHalving(acc1) + KQuantLanes.HorizontalSum(min1);
        results[2] = F32.SumLanesHalving(acc2) + KQuantLanes.HorizontalSum(min2);
        results[3] = F32.SumLanesHalving(acc3) + KQuantLanes.HorizontalSum(min3);
    }

    /// <summary>One token's super-block against an unpacked weight block: <see cref="DotQ8KAvx2"/>'s two FMA steps.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void TokenStep(byte* px, in KQuantLanes.SubBlockQuants q, in KQuantLanes.SubBlockScales sc, Vector128<short> mins,
        Vector256<float> d, Vector128<float> negativeDmin, ref Vector256<float> acc, ref Vector128<float> accMin)
    {
        Vector256<float> dx = Vector256.Create(Unsafe.ReadUnaligned<float>(px));
        Vector256<short> bsums = Vector256.Load((short*)(px + Q8_K.BsumsOffset));
        Vector128<int> m = Sse2.MultiplyAddAdjacent(mins, Ssse3.HorizontalAdd(bsums.GetLower(), bsums.GetUpper()));
        accMin = Fma.MultiplyAdd(dx.GetLower() * negativeDmin, Sse2.ConvertToVector128Single(m), accMin);
        Vector256<int> sumi = KQuantLanes.SubBlockSums(in q, in sc, (sbyte*)(px + Q8_K.QsOffset));
        acc = Fma.MultiplyAdd(dx * d, Avx.ConvertToVector256Single(sumi), acc);
    }

    // Rows r and r+1 share a zmm (row r in the low 256 bits), rows r+2 and r+3 another; each half runs
    // DotQ8KAvx2's lanes, so sums, products and the final reductions are the one-row kernel's bit for bit.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void DotQ8KRows4Avx512(byte* w, int rowBytes, byte* xq, int blocks, float* results)
    {
        Vector512<float> accA = Vector512<float>.Zero, accB = accA, accMin = accA;
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<byte> s0 = KQuantLanes.Both(KQuantLanes.Broadcast(0, 0)), s1 = KQuantLanes.Both(KQuantLanes.Broadcast(1, 1));
        Vector512<byte> s2 = KQuantLanes.Both(KQuantLanes.Broadcast(2, 2)), s3 = KQuantLanes.Both(KQuantLanes.Broadcast(3, 3));
        Vector512<byte> s4 = KQuantLanes.Both(KQuantLanes.Broadcast(4, 4)), s5 = KQuantLanes.Both(KQuantLanes.Broadcast(5, 5));
        Vector512<byte> s6 = KQuantLanes.Both(KQuantLanes.Broadcast(6, 6)), s7 = KQuantLanes.Both(KQuantLanes.Broadcast(7, 7));
        Vector512<int> pickMin = Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        float* table = HalfBits.TablePointer;
        byte* p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, px = xq;
        // Four rows are four short streams, which the hardware prefetchers follow poorly (without this the kernel ran
        // at less than half the one-row kernel's speed from DRAM); the group after the next one is a contiguous run,
        // so fetch it into L2, four bytes of it per byte of a row consumed here. Measured from DRAM (one thread, and
        // in decode): into L1 or only one group ahead was slower than the one-row kernel's hardware-prefetched stream.
        byte* ahead = w + 8L * rowBytes;
        for (nint o = 0, end = (nint)blocks * BlockBytes; o < end; o += BlockBytes, px += Q8_K.BlockBytes)
        {
            byte* next = ahead + 4 * o;
            Sse.Prefetch1(next);
            Sse.Prefetch1(next + 64);
            Sse.Prefetch1(next + 128);
            Sse.Prefetch1(next + 192);
            Sse.Prefetch1(next + 256);
            Sse.Prefetch1(next + 320);
            Sse.Prefetch1(next + 384);
            Sse.Prefetch1(next + 448);
            Sse.Prefetch1(next + 512);
            float dx = Unsafe.ReadUnaligned<float>(px);
            Vector512<short> smA, smB;
            (smA, smB) = ScalesAndMins4(p0 + o + 4, p1 + o + 4, p2 + o + 4, p3 + o + 4);

            // the min terms of the four rows, one 128-bit lane each
            Vector256<short> bsums = Vector256.Load((short*)(px + Q8_K.BsumsOffset));
            Vector128<short> sums32 = Ssse3.HorizontalAdd(bsums.GetLower(), bsums.GetUpper());
            Vector512<short> mins = Avx512F.Shuffle4x128(smA.AsInt32(), smB.AsInt32(), 0b11_01_11_01).AsInt16();
            Vector512<int> minSums = Avx512BW.MultiplyAddAdjacent(mins, KQuantLanes.AllLanes(sums32));
            Vector128<float> dmin = Vector128.Create(table[*(ushort*)(p0 + o + 2)], table[*(ushort*)(p1 + o + 2)],
                table[*(ushort*)(p2 + o + 2)], table[*(ushort*)(p3 + o + 2)]);
            Vector512<float> negativeDmin = Avx512F.PermuteVar16x32((Vector128.Create(-dx) * dmin).ToVector256Unsafe().ToVector512Unsafe(), pickMin);
            accMin = Avx512F.FusedMultiplyAdd(negativeDmin, Avx512F.ConvertToVector512Single(minSums), accMin);

            Vector512<byte> scA = Avx512F.Shuffle4x128(smA.AsInt32(), smA.AsInt32(), 0b10_10_00_00).AsByte();
            Vector512<byte> scB = Avx512F.Shuffle4x128(smB.AsInt32(), smB.AsInt32(), 0b10_10_00_00).AsByte();
            sbyte* y = (sbyte*)(px + Q8_K.QsOffset);
            byte* q0 = p0 + o + 16, q1 = p1 + o + 16, q2 = p2 + o + 16, q3 = p3 + o + 16;
            Vector512<sbyte> y0 = KQuantLanes.BothHalves(y), y1 = KQuantLanes.BothHalves(y + 32);
            Vector512<int> sumA = ChunkPair(KQuantLanes.RowPair(q0, q1), y0, y1, mask, Avx512BW.Shuffle(scA, s0), Avx512BW.Shuffle(scA, s1));
            Vector512<int> sumB = ChunkPair(KQuantLanes.RowPair(q2, q3), y0, y1, mask, Avx512BW.Shuffle(scB, s0), Avx512BW.Shuffle(scB, s1));
            y0 = KQuantLanes.BothHalves(y + 64);
            y1 = KQuantLanes.BothHalves(y + 96);
            sumA += ChunkPair(KQuantLanes.RowPair(q0 + 32, q1 + 32), y0, y1, mask, Avx512BW.Shuffle(scA, s2), Avx512BW.Shuffle(scA, s3));
            sumB += ChunkPair(KQuantLanes.RowPair(q2 + 32, q3 + 32), y0, y1, mask, Avx512BW.Shuffle(scB, s2), Avx512BW.Shuffle(scB, s3));
            y0 = KQuantLanes.BothHalves(y + 128);
            y1 = KQuantLanes.BothHalves(y + 160);
            sumA += ChunkPair(KQuantLanes.RowPair(q0 + 64, q1 + 64), y0, y1, mask, Avx512BW.Shuffle(scA, s4), Avx512BW.Shuffle(scA, s5));
            sumB += ChunkPair(KQuantLanes.RowPair(q2 + 64, q3 + 64), y0, y1, mask, Avx512BW.Shuffle(scB, s4), Avx512BW.Shuffle(scB, s5));
            y0 = KQuantLanes.BothHalves(y + 192);
            y1 = KQuantLanes.BothHalves(y + 224);
            sumA += ChunkPair(KQuantLanes.RowPair(q0 + 96, q1 + 96), y0, y1, mask, Avx512BW.Shuffle(scA, s6), Avx512BW.Shuffle(scA, s7));
            sumB += ChunkPair(KQuantLanes.RowPair(q2 + 96, q3 + 96), y0, y1, mask, Avx512BW.Shuffle(scB, s6), Avx512BW.Shuffle(scB, s7));

            // d_x·d per row as a vector multiply of broadcasts: the same products as the one-row kernel's scalar ones
            var (dA, dB) = KQuantLanes.PerRowHalves(Vector128.Create(dx) * Vector128.Create(table[*(ushort*)(p0 + o)], table[*(ushort*)(p1 + o)],
                table[*(ushort*)(p2 + o)], table[*(ushort*)(p3 + o)]));
            accA = Avx512F.FusedMultiplyAdd(dA, Avx512F.ConvertToVector512Single(sumA), accA);
            accB = Avx512F.FusedMultiplyAdd(dB, Avx512F.ConvertToVector512Single(sumB), accB);
        }
        results[0] = F32.SumLanesHalving(accA.GetLower()) + KQuantLanes.HorizontalSum(accMin.GetLower().GetLower());
        results[1] = F32.SumLanesHalving(accA.GetUpper()) + KQuantLanes.HorizontalSum(accMin.GetLower().GetUpper());
        results[2] = F32.SumLanesHalving(accB.GetLower()) + KQuantLanes.HorizontalSum(accMin.GetUpper().GetLower());
        results[3] = F32.SumLanesHalving(accB.GetUpper()) + KQuantLanes.HorizontalSum(accMin.GetUpper().GetUpper());
    }

    /// <summary>
    /// <see cref="KQuantLanes.UnpackScalesAndMins"/> for four rows at once, one row per 128-bit lane, widened to
    /// 16 bits: rows 0 and 1 as <c>{ sc, m | sc, m }</c> in the first vector, rows 2 and 3 in the second. The same
    /// bit moves as the scalar unpacking, on dwords a, b, c of each row's 12 bytes (16 are read; the quants follow).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe (Vector512<short>, Vector512<short>) ScalesAndMins4(byte* r0, byte* r1, byte* r2, byte* r3)
    {
        Vector512<uint> v = Avx512F.InsertVector256(Vector256.Create(Vector128.Load((uint*)r0), Vector128.Load((uint*)r1)).ToVector512Unsafe(),
            Vector256.Create(Vector128.Load((uint*)r2), Vector128.Load((uint*)r3)), 1);
        Vector512<uint> acbc = Avx512F.Shuffle(v, 0b10_01_10_00);
        Vector512<uint> aabb = Avx512F.Shuffle(v, 0b01_01_00_00);
        Vector512<uint> low = Avx512F.ShiftRightLogicalVariable(acbc, Vector512.Create(0u, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4))
            & Vector512.Create(0x3F3F3F3Fu, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F,
                0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F);
        // bits 6-7 of a's (b's) bytes to bits 4-5 of the same bytes
        Vector512<uint> high = (aabb >>> 2) & Vector512.Create(0u, 0x30303030, 0, 0x30303030, 0, 0x30303030, 0, 0x30303030,
            0, 0x30303030, 0, 0x30303030, 0, 0x30303030, 0, 0x30303030);
        Vector512<byte> packed = (low | high).AsByte();
        return (Avx512BW.ConvertToVector512Int16(packed.GetLower()), Avx512BW.ConvertToVector512Int16(packed.GetUpper()));
    }

    /// <summary><see cref="Chunk"/> for two rows, one per 256-bit half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> ChunkPair(Vector512<byte> q, Vector512<sbyte> yLow, Vector512<sbyte> yHigh, Vector512<byte> mask,
        Vector512<byte> scaleLow, Vector512<byte> scaleHigh)
    {
        Vector512<short> lo = Avx512BW.MultiplyAddAdjacent(q & mask, yLow);
        Vector512<short> hi = Avx512BW.MultiplyAddAdjacent((q.AsUInt16() >>> 4).AsByte() & mask, yHigh);
        return Avx512BW.MultiplyAddAdjacent(lo, scaleLow.AsInt16()) + Avx512BW.MultiplyAddAdjacent(hi, scaleHigh.AsInt16());
    }

    /// <summary>64 elements: low nibbles against y[0..31] with scale <paramref name="scaleLow"/>, high nibbles
    /// against y[32..63] with <paramref name="scaleHigh"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> Chunk(Vector256<byte> q, sbyte* y, Vector256<byte> mask, Vector256<short> scaleLow, Vector256<short> scaleHigh)
    {
        Vector256<short> lo = Avx2.MultiplyAddAdjacent(q & mask, Vector256.Load(y));
        Vector256<short> hi = Avx2.MultiplyAddAdjacent((q.AsUInt16() >>> 4).AsByte() & mask, Vector256.Load(y + 32));
        return Avx2.MultiplyAddAdjacent(lo, scaleLow) + Avx2.MultiplyAddAdjacent(hi, scaleHigh);
    }
}
