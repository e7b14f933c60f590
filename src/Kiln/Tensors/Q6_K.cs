using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q6_K: super-blocks of 256 values stored as
/// <c>{ uint8 ql[128]; uint8 qh[64]; int8 scales[16]; ggml_half d; }</c> (210 bytes): sixteen sub-blocks of 16
/// with signed 8-bit scales, value = d*sc*(q - 32) for a 6-bit q. Per half n of 128 elements and l &lt; 32,
/// with L = ql[64n..], H = qh[32n..]: element 128n + l is L[l] low nibble + (H[l] bits 0-1) &lt;&lt; 4,
/// +32 is L[l+32] low + bits 2-3, +64 is L[l] high + bits 4-5, +96 is L[l+32] high + bits 6-7.
/// </summary>
public static class Q6_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 210;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q6_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    /// <summary>The unsigned 6-bit quant (0..63) of element e of a block.</summary>
    private static int Quant(ReadOnlySpan<byte> block, int e)
    {
        int n = e / 128, k = e % 128 / 32, l = e % 32;
        byte low = block[64 * n + 32 * (k & 1) + l];
        int nibble = k < 2 ? low & 0x0F : low >> 4;
        return nibble | (((block[128 + 32 * n + l] >> (2 * k)) & 3) << 4);
    }

    /// <summary>ggml's dequantize_row_q6_K: (d * sc) * (q - 32).</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q6_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[208..]));
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int e = 0; e < BlockSize; e++)
                o[e] = d * (sbyte)block[192 + e / 16] * (Quant(block, e) - 32);
        }
    }

    /// <summary>
    /// ggml's quantize_row_q6_K_ref bit for bit: per sub-block of 16 a symmetric x²-weighted fit (levels
    /// -32..31) over 19 trial scales, the sixteen scales quantized to int8 against the largest magnitude,
    /// levels recomputed from the stored scales.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>quantize_row_q6_k_impl: with an imatrix (<paramref name="importance"/>, one weight per element) each 16-group's scale search weighs errors by it directly; empty: the reference.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        RowArguments.CheckBlocks("Q6_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (!importance.IsEmpty && importance.Length != src.Length)
            throw new ArgumentException($"importance has {importance.Length} values for a row of {src.Length}", nameof(importance));
        Span<sbyte> levels = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            float maxScale = 0, maxAbsScale = 0;
            for (int j = 0; j < 16; j++)
            {
                scales[j] = KQuantSearch.SymmetricWeighted(32, x.Slice(16 * j, 16), levels.Slice(16 * j, 16),
                    importance.IsEmpty ? default : importance.Slice(b * BlockSize + 16 * j, 16));
                float a = MathF.Abs(scales[j]);
                if (a > maxAbsScale)
                {
                    maxAbsScale = a;
                    maxScale = scales[j];
                }
            }
            if (maxAbsScale < KQuantSearch.GroupMaxEps)
            {
                block.Clear();
                continue;
            }

            float iscale = -128f / maxScale;
            ushort d = HalfBits.FromSingle(1 / iscale);
            BinaryPrimitives.WriteUInt16LittleEndian(block[208..], d);
            for (int j = 0; j < 16; j++)
                block[192 + j] = (byte)(sbyte)Math.Min(127, KQuantSearch.NearestInt(iscale * scales[j]));

            for (int j = 0; j < 16; j++)
            {
                float dl = HalfBits.ToSingle(d) * (sbyte)block[192 + j];
                if (dl == 0)
                    continue;
                for (int i = 0; i < 16; i++)
                    levels[16 * j + i] = (sbyte)(Math.Max(-32, Math.Min(31, KQuantSearch.NearestInt(x[16 * j + i] / dl))) + 32);
            }

            for (int half = 0; half < 2; half++)
            {
                Span<byte> ql = block.Slice(64 * half, 64);
                Span<byte> qh = block.Slice(128 + 32 * half, 32);
                for (int l = 0; l < 32; l++)
                {
                    int e = 128 * half + l;
                    int q1 = levels[e], q2 = levels[e + 32], q3 = levels[e + 64], q4 = levels[e + 96];
                    ql[l] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                    ql[l + 32] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                    qh[l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
                }
            }
        }
    }

    /// <summary>Q6_K weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q6_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per super-block a float sum of value[j]*x[j] in element order, added to a float total.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q6_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
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
    /// Q6_K weights · Q8_K activations (ggml_vec_dot_q6_K_q8_K): per super-block the exact integer
    /// Σ sc·((q - 32)·y), times d_x·d, summed in float in ggml's lane order (<see cref="KQuantLanes"/>);
    /// every path returns the same bits.
    /// </summary>
    public static float DotQ8K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        RowArguments.CheckBlockPair("Q6_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        // Measured on Zen 4: a 512-bit variant with the same lanes (two groups per maddubs, vpsllvw for the high
        // bits, vpermw scale broadcast) was 12% slower than this AVX2 path. A four-row kernel with two rows per zmm
        // (as Q4_K.DotQ8KRows4) was 1.07× faster from L2 but 0.91–0.97× from DRAM (single thread, 2048 columns,
        // the next groups prefetched into L2 4, 8, 12 or 16 rows ahead): Q6_K decode streams at the rate that the
        // one-row kernel's single hardware-prefetched stream already gets.
        if (CpuPaths.CanAvx2)
            return DotQ8KAvx2(w, xq);
        return DotQ8KScalar(w, xq);
    }

    public static float DotQ8KScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = RowArguments.CheckBlockPair("Q6_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        acc.Clear();
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq.Slice(b * Q8_K.BlockBytes, Q8_K.BlockBytes);
            lanes.Clear();
            for (int e = 0; e < BlockSize; e++)
                lanes[KQuantLanes.Lane(e)] += (sbyte)wb[192 + e / 16] * (Quant(wb, e) - 32) * (sbyte)xb[Q8_K.QsOffset + e];
            float d = BinaryPrimitives.ReadSingleLittleEndian(xb) * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb[208..]));
            for (int k = 0; k < 8; k++)
                acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
        }
        return F32.SumLanesHalving(acc);
    }

    /// <summary>
    /// One weight row · four Q8_K activation rows (<paramref name="activationStride"/> bytes apart) made by
    /// <see cref="Q8_K.Quantize"/>: results[t] is bit-identical to <see cref="DotQ8K"/> of activation t. The 6-bit
    /// quants and broadcast scales are unpacked once per super-block and serve all four tokens. Activation bytes
    /// must lie in [−127, 127], as that quantizer guarantees: the maddubs sign trick used here is wrong only for −128.
    /// </summary>
    public static void DotQ8KTile1x4(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq, int activationStride, Span<float> results)
    {
        int blocks = KQuantLanes.CheckTile("Q6_K", BlockBytes, w.Length, xq.Length, activationStride, results.Length);
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
    /// One weight row · <paramref name="tokens"/> (1 to 8) Q8_K activation rows (<paramref name="activationStride"/>
    /// bytes apart) made by <see cref="Q8_K.Quantize"/>: results[t] is bit-identical to <see cref="DotQ8K"/> of
    /// activation t, as for <see cref="DotQ8KTile1x4"/>, with the unpacking of each super-block shared by up to eight
    /// tokens. Fewer than eight cost as much as eight (the last token fills the empty places), which still beats
    /// one-row dots from six tokens on.
    /// </summary>
    public static void DotQ8KTile1x8(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq, int activationStride, int tokens, Span<float> results)
    {
        if (tokens is < 1 or > 8)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "a 1 × 8 tile takes one to eight tokens");
        int blocks = KQuantLanes.CheckTile("Q6_K", BlockBytes, w.Length, xq.Length, activationStride, results.Length, tokens);
        if (CpuPaths.CanAvx2)
        {
            Span<float> all = stackalloc float[8];
            unsafe
            {
                fixed (byte* pw = w)
                fixed (byte* px = xq)
                fixed (float* pr = all)
                    DotQ8KTile1x8Avx2(pw, blocks, px, activationStride, tokens, pr);
            }
            all[..tokens].CopyTo(results);
            return;
        }
        int activationBytes = blocks * Q8_K.BlockBytes;
        for (int t = 0; t < tokens; t++)
            results[t] = DotQ8KScalar(w, xq.Slice(t * activationStride, activationBytes));
    }

    // ---- SIMD paths: callers have checked the lengths. ----

    /// <summary>The 128 unsigned quants of one half as four byte vectors of 32 consecutive elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe (Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>) Quants(byte* ql, byte* qh)
    {
        Vector256<byte> mask = Vector256.Create((byte)0x0F), top = Vector256.Create((byte)0x30);
        Vector256<byte> l0 = Vector256.Load(ql), l1 = Vector256.Load(ql + 32), h = Vector256.Load(qh);
        // 16-bit lane shifts: after the masks each byte keeps only bits that came from itself
        return ((l0 & mask) | ((h.AsUInt16() << 4).AsByte() & top),
                (l1 & mask) | ((h.AsUInt16() << 2).AsByte() & top),
                ((l0.AsUInt16() >>> 4).AsByte() & mask) | (h & top),
                ((l1.AsUInt16() >>> 4).AsByte() & mask) | ((h.AsUInt16() >>> 2).AsByte() & top));
    }

    /// <summary>32 unsigned quants as (d * sc) * (q - 32), sc per 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store32(Vector256<byte> q, float scale0, float scale1, float* o)
    {
        Vector256<int> offset = Vector256.Create(32);
        Vector256<float> v0 = Vector256.Create(scale0), v1 = Vector256.Create(scale1);
        Vector128<byte> lo = q.GetLower(), hi = q.GetUpper();
        (v0 * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo) - offset)).Store(o);
        (v0 * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8)) - offset)).Store(o + 8);
        (v1 * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi) - offset)).Store(o + 16);
        (v1 * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8)) - offset)).Store(o + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void DequantizeBlockAvx2(byte* s, float* o)
    {
        float d = HalfBits.Lookup(s + 208);
        sbyte* sc = (sbyte*)(s + 192);
        for (int n = 0; n < 2; n++)
        {
            var (q0, q1, q2, q3) = Quants(s + 64 * n, s + 128 + 32 * n);
            sbyte* scn = sc + 8 * n;
            float* on = o + 128 * n;
            Store32(q0, d * scn[0], d * scn[1], on);
            Store32(q1, d * scn[2], d * scn[3], on + 32);
            Store32(q2, d * scn[4], d * scn[5], on + 64);
            Store32(q3, d * scn[6], d * scn[7], on + 96);
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

    // maddubs on the unsigned quants (0..63) keeps pair sums within ±16128; 32·y comes off each pair sum, leaving
    // ggml's 16-bit values, so every lane and the float order match ggml_vec_dot_q6_K_q8_K (AVX2).
    // Not inlined into DotQ8K: there the JIT ran out of inlining budget and called this body's own helpers
    // once per super-block (seen in DOTNET_JitDisasm of the tiered and the fully optimized code alike).
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static unsafe float DotQ8KAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = w.Length / BlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> s0 = KQuantLanes.Broadcast(0, 1), s1 = KQuantLanes.Broadcast(2, 3);
        Vector256<byte> s2 = KQuantLanes.Broadcast(4, 5), s3 = KQuantLanes.Broadcast(6, 7);
        Vector256<byte> thirtyTwo = Vector256.Create((byte)32);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_K.BlockBytes)
            {
                Vector256<short> sc = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(pw + 192)));
                sbyte* y = (sbyte*)(px + Q8_K.QsOffset);
                Vector256<byte> sc0 = Vector256.Create(sc.GetLower(), sc.GetLower()).AsByte();
                Vector256<byte> sc1 = Vector256.Create(sc.GetUpper(), sc.GetUpper()).AsByte();
                var (a0, a1, a2, a3) = Quants(pw, pw + 128);
                Vector256<int> sumi = Group(a0, thirtyTwo, y, Avx2.Shuffle(sc0, s0)) + Group(a1, thirtyTwo, y + 32, Avx2.Shuffle(sc0, s1))
                    + Group(a2, thirtyTwo, y + 64, Avx2.Shuffle(sc0, s2)) + Group(a3, thirtyTwo, y + 96, Avx2.Shuffle(sc0, s3));
                var (b0, b1, b2, b3) = Quants(pw + 64, pw + 160);
                sumi += Group(b0, thirtyTwo, y + 128, Avx2.Shuffle(sc1, s0)) + Group(b1, thirtyTwo, y + 160, Avx2.Shuffle(sc1, s1))
                    + Group(b2, thirtyTwo, y + 192, Avx2.Shuffle(sc1, s2)) + Group(b3, thirtyTwo, y + 224, Avx2.Shuffle(sc1, s3));
                float d = Unsafe.ReadUnaligned<float>(px) * HalfBits.Lookup(pw + 208);
                acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
            }
        }
        return F32.SumLanesHalving(acc);
    }

    // |q - 32| × (y with the sign of q - 32) gives the same 16-bit pair sums as maddubs(q, y) - maddubs(32, y) for y
    // in [-127, 127], with one multiply per token instead of two. Group by group, token by token: only one group's
    // centered quants, magnitudes and scales are live at a time, so the tokens' integer sums stay in registers (for
    // four tokens 1.05-1.1x faster than unpacking the whole super-block first; eight tokens per tile are 1.2x faster
    // per token than four; single thread, Zen 4).
    internal static unsafe void DotQ8KTile1x8Avx2(byte* w, int blocks, byte* xq, int stride, int tokens, float* results)
    {
        // First, before any vector exists: compiled without profile data (kiln compiles loops fully optimized at
        // their first call) this constructor stays a call, and vectors live across a call were kept on the stack
        // for the whole loop, loaded and stored every block.
        var y = new TokenRows8((sbyte*)(xq + Q8_K.QsOffset), stride, tokens);
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<float> acc4 = acc0, acc5 = acc0, acc6 = acc0, acc7 = acc0;
        Vector256<byte> s0 = KQuantLanes.Broadcast(0, 1), s1 = KQuantLanes.Broadcast(2, 3);
        Vector256<byte> s2 = KQuantLanes.Broadcast(4, 5), s3 = KQuantLanes.Broadcast(6, 7);
        byte* pw = w;
        for (int b = 0; b < blocks; b++, pw += BlockBytes, y.Advance())
        {
            Vector256<short> sc = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(pw + 192)));
            Vector256<byte> sc0 = Vector256.Create(sc.GetLower(), sc.GetLower()).AsByte();
            Vector256<byte> sc1 = Vector256.Create(sc.GetUpper(), sc.GetUpper()).AsByte();
            var sums = default(TokenSums8);
            var (a0, a1, a2, a3) = Quants(pw, pw + 128);
            GroupStep(ref sums, a0, Avx2.Shuffle(sc0, s0), in y, 0);
            GroupStep(ref sums, a1, Avx2.Shuffle(sc0, s1), in y, 32);
            GroupStep(ref sums, a2, Avx2.Shuffle(sc0, s2), in y, 64);
            GroupStep(ref sums, a3, Avx2.Shuffle(sc0, s3), in y, 96);
            var (b0, b1, b2, b3) = Quants(pw + 64, pw + 160);
            GroupStep(ref sums, b0, Avx2.Shuffle(sc1, s0), in y, 128);
            GroupStep(ref sums, b1, Avx2.Shuffle(sc1, s1), in y, 160);
            GroupStep(ref sums, b2, Avx2.Shuffle(sc1, s2), in y, 192);
            GroupStep(ref sums, b3, Avx2.Shuffle(sc1, s3), in y, 224);
            Vector256<float> d = Vector256.Create(HalfBits.Lookup(pw + 208));
            acc0 = Scaled(y.Y0, d, sums.I0, acc0);
            acc1 = Scaled(y.Y1, d, sums.I1, acc1);
            acc2 = Scaled(y.Y2, d, sums.I2, acc2);
            acc3 = Scaled(y.Y3, d, sums.I3, acc3);
            acc4 = Scaled(y.Y4, d, sums.I4, acc4);
            acc5 = Scaled(y.Y5, d, sums.I5, acc5);
            acc6 = Scaled(y.Y6, d, sums.I6, acc6);
            acc7 = Scaled(y.Y7, d, sums.I7, acc7);
        }
        results[0] = F32.SumLanesHalving(acc0);
        results[1] = F32.SumLanesHalving(acc1);
        results[2] = F32.SumLanesHalving(acc2);
        results[3] = F32.SumLanesHalving(acc3);
        results[4] = F32.SumLanesHalving(acc4);
        results[5] = F32.SumLanesHalving(acc5);
        results[6] = F32.SumLanesHalving(acc6);
        results[7] = F32.SumLanesHalving(acc7);
    }

    // DotQ8KTile1x8Avx2 for four tokens.
    internal static unsafe void DotQ8KTile1x4Avx2(byte* w, int blocks, byte* xq, int stride, float* results)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<byte> s0 = KQuantLanes.Broadcast(0, 1), s1 = KQuantLanes.Broadcast(2, 3);
        Vector256<byte> s2 = KQuantLanes.Broadcast(4, 5), s3 = KQuantLanes.Broadcast(6, 7);
        byte* pw = w;
        var y = new TokenRows4((sbyte*)(xq + Q8_K.QsOffset), stride);
        for (int b = 0; b < blocks; b++, pw += BlockBytes, y.Advance())
        {
            Vector256<short> sc = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(pw + 192)));
            Vector256<byte> sc0 = Vector256.Create(sc.GetLower(), sc.GetLower()).AsByte();
            Vector256<byte> sc1 = Vector256.Create(sc.GetUpper(), sc.GetUpper()).AsByte();
            var sums = default(TokenSums4);
            var (a0, a1, a2, a3) = Quants(pw, pw + 128);
            GroupStep4(ref sums, a0, Avx2.Shuffle(sc0, s0), in y, 0);
            GroupStep4(ref sums, a1, Avx2.Shuffle(sc0, s1), in y, 32);
            GroupStep4(ref sums, a2, Avx2.Shuffle(sc0, s2), in y, 64);
            GroupStep4(ref sums, a3, Avx2.Shuffle(sc0, s3), in y, 96);
            var (b0, b1, b2, b3) = Quants(pw + 64, pw + 160);
            GroupStep4(ref sums, b0, Avx2.Shuffle(sc1, s0), in y, 128);
            GroupStep4(ref sums, b1, Avx2.Shuffle(sc1, s1), in y, 160);
            GroupStep4(ref sums, b2, Avx2.Shuffle(sc1, s2), in y, 192);
            GroupStep4(ref sums, b3, Avx2.Shuffle(sc1, s3), in y, 224);
            Vector256<float> d = Vector256.Create(HalfBits.Lookup(pw + 208));
            acc0 = Scaled(y.Y0, d, sums.I0, acc0);
            acc1 = Scaled(y.Y1, d, sums.I1, acc1);
            acc2 = Scaled(y.Y2, d, sums.I2, acc2);
            acc3 = Scaled(y.Y3, d, sums.I3, acc3);
        }
        results[0] = F32.SumLanesHalving(acc0);
        results[1] = F32.SumLanesHalving(acc1);
        results[2] = F32.SumLanesHalving(acc2);
        results[3] = F32.SumLanesHalving(acc3);
    }

    /// <summary>Four tokens' current super-block quants (y), <c>stride</c> bytes apart.</summary>
    private unsafe struct TokenRows4(sbyte* y0, int stride)
    {
        public sbyte* Y0 = y0, Y1 = y0 + stride, Y2 = y0 + 2 * stride, Y3 = y0 + 3 * stride;
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Advance()
        {
            Y0 += Q8_K.BlockBytes; Y1 += Q8_K.BlockBytes; Y2 += Q8_K.BlockBytes; Y3 += Q8_K.BlockBytes;
        }
    }

    /// <summary>Four tokens' integer lanes of one super-block.</summary>
    private struct TokenSums4
    {
        public Vector256<int> I0, I1, I2, I3;
    }

    /// <summary><see cref="GroupStep(ref TokenSums8, Vector256{byte}, Vector256{byte}, in TokenRows8, int)"/> for four tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void GroupStep4(ref TokenSums4 sums, Vector256<byte> q, Vector256<byte> scales, in TokenRows4 y, int offset)
    {
        Vector256<sbyte> v = q.AsSByte() - Vector256.Create((sbyte)32);
        Vector256<sbyte> m = Avx2.Abs(v).AsSByte();
        Vector256<short> s = scales.AsInt16();
        sums.I0 += Signed(m, v, y.Y0 + offset, s);
        sums.I1 += Signed(m, v, y.Y1 + offset, s);
        sums.I2 += Signed(m, v, y.Y2 + offset, s);
        sums.I3 += Signed(m, v, y.Y3 + offset, s);
    }

    /// <summary>Eight tokens' current super-block quants (y), <c>stride</c> bytes apart; past <c>tokens</c>, the last token's again.</summary>
    private unsafe struct TokenRows8(sbyte* y0, int stride, int tokens)
    {
        public sbyte* Y0 = y0, Y1 = y0 + Math.Min(1, tokens - 1) * stride, Y2 = y0 + Math.Min(2, tokens - 1) * stride, Y3 = y0 + Math.Min(3, tokens - 1) * stride;
        public sbyte* Y4 = y0 + Math.Min(4, tokens - 1) * stride, Y5 = y0 + Math.Min(5, tokens - 1) * stride;
        public sbyte* Y6 = y0 + Math.Min(6, tokens - 1) * stride, Y7 = y0 + Math.Min(7, tokens - 1) * stride;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Advance()
        {
            Y0 += Q8_K.BlockBytes; Y1 += Q8_K.BlockBytes; Y2 += Q8_K.BlockBytes; Y3 += Q8_K.BlockBytes;
            Y4 += Q8_K.BlockBytes; Y5 += Q8_K.BlockBytes; Y6 += Q8_K.BlockBytes; Y7 += Q8_K.BlockBytes;
        }
    }

    /// <summary>Eight tokens' integer lanes of one super-block.</summary>
    private struct TokenSums8
    {
        public Vector256<int> I0, I1, I2, I3, I4, I5, I6, I7;
    }

    /// <summary>One 32-element group (unsigned quants q; scales: the first 16 elements' in the low 128 bits' 16-bit lanes, the next 16's in the high ones) against eight tokens' activations at <paramref name="offset"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void GroupStep(ref TokenSums8 sums, Vector256<byte> q, Vector256<byte> scales, in TokenRows8 y, int offset)
    {
        Vector256<sbyte> v = q.AsSByte() - Vector256.Create((sbyte)32);
        Vector256<sbyte> m = Avx2.Abs(v).AsSByte();
        Vector256<short> s = scales.AsInt16();
        sums.I0 += Signed(m, v, y.Y0 + offset, s);
        sums.I1 += Signed(m, v, y.Y1 + offset, s);
        sums.I2 += Signed(m, v, y.Y2 + offset, s);
        sums.I3 += Signed(m, v, y.Y3 + offset, s);
        sums.I4 += Signed(m, v, y.Y4 + offset, s);
        sums.I5 += Signed(m, v, y.Y5 + offset, s);
        sums.I6 += Signed(m, v, y.Y6 + offset, s);
        sums.I7 += Signed(m, v, y.Y7 + offset, s);
    }

    /// <summary>A token's super-block sum into its accumulator: d_x·d (the scalar kernel's product) times the integer lanes; y at the block's quants.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<float> Scaled(sbyte* y, Vector256<float> d, Vector256<int> sumi, Vector256<float> acc) =>
        Fma.MultiplyAdd(Vector256.Create(Unsafe.ReadUnaligned<float>((byte*)y - Q8_K.QsOffset)) * d, Avx.ConvertToVector256Single(sumi), acc);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> Signed(Vector256<sbyte> magnitude, Vector256<sbyte> centered, sbyte* y, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude.AsByte(), Avx2.Sign(Vector256.Load(y), centered)), scales);

    /// <summary>32 quants (biased by 32) against 32 activations, the first 16 scaled by the low half of <paramref name="scales"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> Group(Vector256<byte> q, Vector256<byte> thirtyTwo, sbyte* y, Vector256<byte> scales)
    {
        Vector256<sbyte> v = Vector256.Load(y);
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, v) - Avx2.MultiplyAddAdjacent(thirtyTwo, v), scales.AsInt16());
    }
}
