using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q2_K: super-blocks of 256 values stored as
/// <c>{ uint8 scales[16]; uint8 qs[64]; ggml_half d, dmin; }</c> (84 bytes): sixteen sub-blocks of 16, scale
/// byte s holding a 4-bit scale (low nibble) and 4-bit min (high nibble). Element 128n + 32j + l (l &lt; 32) is
/// (qs[32n + l] &gt;&gt; 2j) &amp; 3; value = d*sc*q - dmin*m.
/// </summary>
public static class Q2_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 84;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q2_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    /// <summary>The unsigned quant (0..3) of element e of a block.</summary>
    private static int Quant(ReadOnlySpan<byte> block, int e) =>
        (block[16 + 32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;

    /// <summary>ggml's dequantize_row_q2_K: dl = d*sc and ml = dmin*m per sub-block, then dl*q - ml.</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q2_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[80..]));
            float dmin = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[82..]));
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int s = 0; s < 16; s++)
            {
                float dl = d * (block[s] & 0x0F), ml = dmin * (block[s] >> 4);
                for (int e = 16 * s; e < 16 * s + 16; e++)
                    o[e] = dl * Quant(block, e) - ml;
            }
        }
    }

    /// <summary>
    /// ggml's quantize_row_q2_K_ref bit for bit: per sub-block of 16 an affine fit (levels 0..3) minimising the
    /// |x|-weighted absolute error, scales and mins quantized to 4 bits against the largest, levels recomputed
    /// from the stored values.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>
    /// quantize_row_q2_K_impl with an imatrix (<paramref name="importance"/>, one weight per element): each 16-group
    /// fitted by make_qkx3_quants under importance · sqrt(σ² + x²), the 4-bit scales and mins by make_qp_quants
    /// weighted by the groups' total weights. Empty: the reference above.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        RowArguments.CheckBlocks("Q2_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (!importance.IsEmpty && importance.Length != src.Length)
            throw new ArgumentException($"importance has {importance.Length} values for a row of {src.Length}", nameof(importance));
        Span<byte> levels = stackalloc byte[BlockSize];
        Span<byte> scratch = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> groupWeights = stackalloc float[16];
        Span<byte> scaleLevels = stackalloc byte[16];
        Span<byte> minLevels = stackalloc byte[16];
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            ushort d = 0, dmin = 0;
            if (!importance.IsEmpty)
            {
                float sigma2 = KQuantSearch.SumOfSquares(x) / BlockSize;
                for (int j = 0; j < 16; j++)
                {
                    ReadOnlySpan<float> sub = x.Slice(16 * j, 16);
                    KQuantSearch.ImportanceWeights(importance.Slice(b * BlockSize + 16 * j, 16), sub, sigma2, weights);
                    float sw = 0;
                    for (int l = 0; l < 16; l++)
                        sw += weights[l];
                    groupWeights[j] = sw;
                    scales[j] = KQuantSearch.AffineSearch(3, sub, weights, levels.Slice(16 * j, 16), out mins[j], scratch, -0.9f, 0.05f, 36, useMad: false);
                }
                d = HalfBits.FromSingle(KQuantSearch.NonNegativeWeighted(15, scales, scaleLevels, groupWeights));
                dmin = HalfBits.FromSingle(KQuantSearch.NonNegativeWeighted(15, mins, minLevels, groupWeights));
                for (int j = 0; j < 16; j++)
                    block[j] = (byte)(scaleLevels[j] | (minLevels[j] << 4));
                WriteLevels(x, block, levels, d, dmin);
                continue;
            }
            float maxScale = 0, maxMin = 0;
            for (int j = 0; j < 16; j++)
            {
                ReadOnlySpan<float> sub = x.Slice(16 * j, 16);
                for (int l = 0; l < 16; l++)
                    weights[l] = MathF.Abs(sub[l]);
                scales[j] = KQuantSearch.AffineSearch(3, sub, weights, levels.Slice(16 * j, 16), out mins[j], scratch, -0.5f, 0.1f, 15, useMad: true);
                maxScale = Math.Max(maxScale, scales[j]);
                maxMin = Math.Max(maxMin, mins[j]);
            }

            if (maxScale > 0)
            {
                float iscale = 15f / maxScale;
                for (int j = 0; j < 16; j++)
                    block[j] = (byte)KQuantSearch.NearestInt(iscale * scales[j]);
                d = HalfBits.FromSingle(maxScale / 15f);
            }
            else
            {
                block[..16].Clear();
            }
            if (maxMin > 0)
            {
                float iscale = 15f / maxMin;
                for (int j = 0; j < 16; j++)
                    block[j] |= (byte)(KQuantSearch.NearestInt(iscale * mins[j]) << 4);
                dmin = HalfBits.FromSingle(maxMin / 15f);
            }
            WriteLevels(x, block, levels, d, dmin);
        }
    }

    /// <summary>d and dmin stored, levels recomputed from the stored 4-bit scales and mins, then packed.</summary>
    private static void WriteLevels(ReadOnlySpan<float> x, Span<byte> block, Span<byte> levels, ushort d, ushort dmin)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(block[80..], d);
        BinaryPrimitives.WriteUInt16LittleEndian(block[82..], dmin);
        for (int j = 0; j < 16; j++)
        {
            float dl = HalfBits.ToSingle(d) * (block[j] & 0xF);
            if (dl == 0)
                continue;
            float ml = HalfBits.ToSingle(dmin) * (block[j] >> 4);
            for (int i = 0; i < 16; i++)
                levels[16 * j + i] = (byte)Math.Max(0, Math.Min(3, KQuantSearch.NearestInt((x[16 * j + i] + ml) / dl)));
        }

        for (int half = 0; half < 2; half++)
        {
            for (int l = 0; l < 32; l++)
            {
                int e = 128 * half + l;
                block[16 + 32 * half + l] = (byte)(levels[e] | (levels[e + 32] << 2) | (levels[e + 64] << 4) | (levels[e + 96] << 6));
            }
        }
    }

    /// <summary>Q2_K weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q2_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per super-block a float sum of value[j]*x[j] in element order, added to a float total.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q2_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
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
    /// Q2_K weights · Q8_K activations (ggml_vec_dot_q2_K_q8_K): per super-block the exact integers
    /// Σ sc·(q·y) and Σ m·bsum, times d_x·d and d_x·dmin, summed in float in ggml's lane order
    /// (<see cref="KQuantLanes"/>); every path returns the same bits.
    /// </summary>
    public static float DotQ8K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        RowArguments.CheckBlockPair("Q2_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        if (CpuPaths.CanAvx2)
            return DotQ8KAvx2(w, xq);
        return DotQ8KScalar(w, xq);
    }

    public static float DotQ8KScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = RowArguments.CheckBlockPair("Q2_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        acc.Clear();
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq.Slice(b * Q8_K.BlockBytes, Q8_K.BlockBytes);
            float dx = BinaryPrimitives.ReadSingleLittleEndian(xb);
            float negativeDmin = -dx * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb[82..]));
            for (int k = 0; k < 8; k++)
            {
                int mins = (wb[2 * k] >> 4) * BinaryPrimitives.ReadInt16LittleEndian(xb[(Q8_K.BsumsOffset + 4 * k)..])
                         + (wb[2 * k + 1] >> 4) * BinaryPrimitives.ReadInt16LittleEndian(xb[(Q8_K.BsumsOffset + 4 * k + 2)..]);
                acc[k] = MathF.FusedMultiplyAdd(negativeDmin, mins, acc[k]);
            }
            lanes.Clear();
            for (int e = 0; e < BlockSize; e++)
                lanes[KQuantLanes.Lane(e)] += (wb[e / 16] & 0x0F) * Quant(wb, e) * (sbyte)xb[Q8_K.QsOffset + e];
            float d = dx * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb[80..]));
            for (int k = 0; k < 8; k++)
                acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
        }
        return F32.SumLanesHalving(acc);
    }

    // ---- SIMD paths: callers have checked the lengths. ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Crumbs(Vector256<byte> q, int j) =>
        (q.AsUInt16() >>> (2 * j)).AsByte() & Vector256.Create((byte)3);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void DequantizeBlockAvx2(byte* s, float* o)
    {
        float d = HalfBits.Lookup(s + 80), dmin = HalfBits.Lookup(s + 82);
        for (int n = 0; n < 2; n++)
        {
            Vector256<byte> q = Vector256.Load(s + 16 + 32 * n);
            for (int j = 0; j < 4; j++)
            {
                int g = 4 * n + j;
                Vector256<byte> c = Crumbs(q, j);
                byte s0 = s[2 * g], s1 = s[2 * g + 1];
                StoreScaled(c.GetLower(), d * (s0 & 0x0F), dmin * (s0 >> 4), o + 32 * g);
                StoreScaled(c.GetUpper(), d * (s1 & 0x0F), dmin * (s1 >> 4), o + 32 * g + 16);
            }
        }
    }

    /// <summary>16 unsigned quants as scale*q - offset.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void StoreScaled(Vector128<byte> q, float scale, float offset, float* o)
    {
        Vector256<float> vs = Vector256.Create(scale), vo = Vector256.Create(offset);
        (vs * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q)) - vo).Store(o);
        (vs * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(q, 8))) - vo).Store(o + 8);
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

    // maddubs on the 2-bit quants (pair sums within ±768), vpmaddwd by the 4-bit scales; the min term is one
    // vpmaddwd of the sixteen 4-bit mins against the activations' bsums. Lanes and float order as
    // ggml_vec_dot_q2_K_q8_K (AVX2): one accumulator, the min term first with -d_x·dmin.
    internal static unsafe float DotQ8KAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = w.Length / BlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> s0 = KQuantLanes.Broadcast(0, 1), s1 = KQuantLanes.Broadcast(2, 3);
        Vector256<byte> s2 = KQuantLanes.Broadcast(4, 5), s3 = KQuantLanes.Broadcast(6, 7);
        Vector128<byte> nibble = Vector128.Create((byte)0x0F);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_K.BlockBytes)
            {
                float dx = Unsafe.ReadUnaligned<float>(px);
                Vector128<byte> packed = Vector128.Load(pw);
                Vector256<short> mins = Avx2.ConvertToVector256Int16((packed.AsUInt16() >>> 4).AsByte() & nibble).AsInt16();
                Vector256<int> summ = Avx2.MultiplyAddAdjacent(mins, Vector256.Load((short*)(px + Q8_K.BsumsOffset)));
                acc = Fma.MultiplyAdd(Vector256.Create(-dx * HalfBits.Lookup(pw + 82)), Avx.ConvertToVector256Single(summ), acc);

                Vector256<short> sc = Avx2.ConvertToVector256Int16(packed & nibble).AsInt16();
                Vector256<byte> sc0 = Vector256.Create(sc.GetLower(), sc.GetLower()).AsByte();
                Vector256<byte> sc1 = Vector256.Create(sc.GetUpper(), sc.GetUpper()).AsByte();
                sbyte* y = (sbyte*)(px + Q8_K.QsOffset);
                Vector256<byte> q = Vector256.Load(pw + 16);
                Vector256<int> sumi = Group(Crumbs(q, 0), y, Avx2.Shuffle(sc0, s0)) + Group(Crumbs(q, 1), y + 32, Avx2.Shuffle(sc0, s1))
                    + Group(Crumbs(q, 2), y + 64, Avx2.Shuffle(sc0, s2)) + Group(Crumbs(q, 3), y + 96, Avx2.Shuffle(sc0, s3));
                q = Vector256.Load(pw + 48);
                sumi += Group(Crumbs(q, 0), y + 128, Avx2.Shuffle(sc1, s0)) + Group(Crumbs(q, 1), y + 160, Avx2.Shuffle(sc1, s1))
                    + Group(Crumbs(q, 2), y + 192, Avx2.Shuffle(sc1, s2)) + Group(Crumbs(q, 3), y + 224, Avx2.Shuffle(sc1, s3));
                acc = Fma.MultiplyAdd(Vector256.Create(dx * HalfBits.Lookup(pw + 80)), Avx.ConvertToVector256Single(sumi), acc);
            }
        }
        return F32.SumLanesHalving(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> Group(Vector256<byte> q, sbyte* y, Vector256<byte> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load(y)), scales.AsInt16());
}
