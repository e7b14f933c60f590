using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q3_K: super-blocks of 256 values stored as
/// <c>{ uint8 hmask[32]; uint8 qs[64]; uint8 scales[12]; ggml_half d; }</c> (110 bytes): sixteen sub-blocks of
/// 16 with 6-bit scales biased by 32 (see <see cref="KQuantLanes.UnpackQ3Scales"/>). Element 128n + 32j + l
/// (l &lt; 32) has low bits (qs[32n + l] &gt;&gt; 2j) &amp; 3 and subtracts 4 unless bit 4n + j of hmask[l] is
/// set; value = d*(sc - 32)*q.
/// </summary>
public static class Q3_K
{
    public const int BlockSize = 256;
    public const int BlockBytes = 110;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q3_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    /// <summary>The signed quant (-4..3) of element e of a block.</summary>
    private static int Quant(ReadOnlySpan<byte> block, int e)
    {
        int n = e / 128, j = e % 128 / 32, l = e % 32;
        int low = (block[32 + 32 * n + l] >> (2 * j)) & 3;
        return ((block[l] >> (4 * n + j)) & 1) != 0 ? low : low - 4;
    }

    /// <summary>Scale s (0..15) as stored, 0..63, from the 12 packed bytes (the layout ggml's quantizer writes).</summary>
    private static int Scale(ReadOnlySpan<byte> block, int s)
    {
        int low = s < 8 ? block[96 + s] & 0x0F : block[96 + s - 8] >> 4;
        return low | (((block[96 + 8 + s % 4] >> (2 * (s / 4))) & 3) << 4);
    }

    /// <summary>ggml's dequantize_row_q3_K: dl = d*(sc - 32) per sub-block, then dl*q.</summary>
    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q3_K", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[108..]));
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int s = 0; s < 16; s++)
            {
                float dl = d * (Scale(block, s) - 32);
                for (int e = 16 * s; e < 16 * s + 16; e++)
                    o[e] = dl * Quant(block, e);
            }
        }
    }

    /// <summary>
    /// ggml's quantize_row_q3_K_ref bit for bit: per sub-block of 16 a symmetric fit (levels -4..3) refined
    /// level by level, the sixteen scales quantized to 6 bits (biased by 32) against the largest magnitude,
    /// levels recomputed from the stored scales.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst) => Quantize(src, dst, default);

    /// <summary>
    /// quantize_row_q3_K_impl with an imatrix (<paramref name="importance"/>, one weight per element): each 16-group
    /// fitted by make_qx_quants under importance · sqrt(σ² + x²), the sixteen scales by make_qx_quants weighted by
    /// the groups' total weights. Empty: the reference above.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        RowArguments.CheckBlocks("Q3_K", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (!importance.IsEmpty && importance.Length != src.Length)
            throw new ArgumentException($"importance has {importance.Length} values for a row of {src.Length}", nameof(importance));
        Span<sbyte> levels = stackalloc sbyte[BlockSize];
        Span<float> scales = stackalloc float[16];
        Span<float> weights = stackalloc float[16];
        Span<float> groupWeights = stackalloc float[16];
        Span<sbyte> scaleLevels = stackalloc sbyte[16];
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            if (!importance.IsEmpty)
            {
                float sigma2 = 2 * KQuantSearch.SumOfSquares(x) / BlockSize;
                for (int j = 0; j < 16; j++)
                {
                    KQuantSearch.ImportanceWeights(importance.Slice(b * BlockSize + 16 * j, 16), x.Slice(16 * j, 16), sigma2, weights);
                    float sw = 0;
                    for (int l = 0; l < 16; l++)
                        sw += weights[l];
                    groupWeights[j] = sw;
                    scales[j] = KQuantSearch.SymmetricWeighted(4, x.Slice(16 * j, 16), levels.Slice(16 * j, 16), weights);
                }
                float dBlock = KQuantSearch.SymmetricWeighted(32, scales, scaleLevels, groupWeights);
                Span<byte> scalesField = block.Slice(96, 12);
                scalesField.Clear();
                for (int j = 0; j < 16; j++)
                {
                    int l = scaleLevels[j];
                    if (j < 8)
                        scalesField[j] = (byte)(l & 0xF);
                    else
                        scalesField[j - 8] |= (byte)((l & 0xF) << 4);
                    scalesField[8 + j % 4] |= (byte)((l >> 4) << (2 * (j / 4)));
                }
                BinaryPrimitives.WriteUInt16LittleEndian(block[108..], HalfBits.FromSingle(dBlock));
                WriteLevels(x, block, levels);
                continue;
            }
            float maxScale = 0, amax = 0;
            for (int j = 0; j < 16; j++)
            {
                scales[j] = KQuantSearch.SymmetricRefined(4, x.Slice(16 * j, 16), levels.Slice(16 * j, 16));
                float a = MathF.Abs(scales[j]);
                if (a > amax)
                {
                    amax = a;
                    maxScale = scales[j];
                }
            }

            Span<byte> packed = block.Slice(96, 12);
            packed.Clear();
            ushort d = 0;
            if (maxScale != 0)
            {
                float iscale = -32f / maxScale;
                for (int j = 0; j < 16; j++)
                {
                    // ggml narrows to int8 before clamping; |iscale*scale| <= 32 keeps that lossless
                    int l = Math.Max(-32, Math.Min(31, (int)(sbyte)KQuantSearch.NearestInt(iscale * scales[j]))) + 32;
                    if (j < 8)
                        packed[j] = (byte)(l & 0xF);
                    else
                        packed[j - 8] |= (byte)((l & 0xF) << 4);
                    packed[8 + j % 4] |= (byte)((l >> 4) << (2 * (j / 4)));
                }
                d = HalfBits.FromSingle(1 / iscale);
            }
            BinaryPrimitives.WriteUInt16LittleEndian(block[108..], d);
            WriteLevels(x, block, levels);
        }
    }

    /// <summary>Levels recomputed from the stored scales, then split into hmask and the 2-bit quants.</summary>
    private static void WriteLevels(ReadOnlySpan<float> x, Span<byte> block, Span<sbyte> levels)
    {
        ReadOnlySpan<byte> packed = block.Slice(96, 12);
        ushort d = BinaryPrimitives.ReadUInt16LittleEndian(block[108..]);
        for (int j = 0; j < 16; j++)
        {
            int sc = (j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4) | (((packed[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
            float dl = HalfBits.ToSingle(d) * (sc - 32);
            if (dl == 0)
                continue;
            for (int i = 0; i < 16; i++)
                levels[16 * j + i] = (sbyte)(Math.Max(-4, Math.Min(3, KQuantSearch.NearestInt(x[16 * j + i] / dl))) + 4);
        }

        // hmask bit 4n+j of byte l is the high bit of element 128n + 32j + l
        Span<byte> hmask = block[..32];
        hmask.Clear();
        for (int e = 0; e < BlockSize; e++)
        {
            if (levels[e] > 3)
            {
                hmask[e % 32] |= (byte)(1 << (e / 32));
                levels[e] -= 4;
            }
        }
        for (int half = 0; half < 2; half++)
        {
            for (int l = 0; l < 32; l++)
            {
                int e = 128 * half + l;
                block[32 + 32 * half + l] = (byte)((byte)levels[e] | ((byte)levels[e + 32] << 2) | ((byte)levels[e + 64] << 4) | ((byte)levels[e + 96] << 6));
            }
        }
    }

    /// <summary>Q3_K weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q3_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per super-block a float sum of value[j]*x[j] in element order, added to a float total.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q3_K", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
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
    /// Q3_K weights · Q8_K activations (ggml_vec_dot_q3_K_q8_K): per super-block the exact integer
    /// Σ (sc - 32)·(q·y), times d_x·d, summed in float in ggml's lane order (<see cref="KQuantLanes"/>);
    /// every path returns the same bits.
    /// </summary>
    public static float DotQ8K(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        RowArguments.CheckBlockPair("Q3_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        if (CpuPaths.CanAvx2)
            return DotQ8KAvx2(w, xq);
        return DotQ8KScalar(w, xq);
    }

    public static float DotQ8KScalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = RowArguments.CheckBlockPair("Q3_K", BlockBytes, w.Length, "Q8_K", Q8_K.BlockBytes, xq.Length, nameof(xq));
        Span<int> lanes = stackalloc int[8];
        Span<float> acc = stackalloc float[8];
        acc.Clear();
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq.Slice(b * Q8_K.BlockBytes, Q8_K.BlockBytes);
            lanes.Clear();
            for (int e = 0; e < BlockSize; e++)
                lanes[KQuantLanes.Lane(e)] += (Scale(wb, e / 16) - 32) * Quant(wb, e) * (sbyte)xb[Q8_K.QsOffset + e];
            float d = BinaryPrimitives.ReadSingleLittleEndian(xb) * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb[108..]));
            for (int k = 0; k < 8; k++)
                acc[k] = MathF.FusedMultiplyAdd(d, lanes[k], acc[k]);
        }
        return F32.SumLanesHalving(acc);
    }

    // ---- SIMD paths: callers have checked the lengths. ----

    /// <summary>
    /// Group g = 4n + j (32 elements) as unsigned q + 4 (0..7): low bits from qs half <paramref name="low"/>
    /// shifted by 2j, bit 2 from hmask already shifted right by g within each byte.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Biased(Vector256<byte> low, int j, Vector256<byte> h) =>
        ((low.AsUInt16() >>> (2 * j)).AsByte() & Vector256.Create((byte)3)) | ((h.AsUInt16() << 2).AsByte() & Vector256.Create((byte)4));

    /// <summary>32 biased quants (q + 4) as dl*q, dl per 16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store32(Vector256<byte> q, float scale0, float scale1, float* o)
    {
        Vector256<int> four = Vector256.Create(4);
        Vector256<float> v0 = Vector256.Create(scale0), v1 = Vector256.Create(scale1);
        Vector128<byte> lo = q.GetLower(), hi = q.GetUpper();
        (v0 * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(lo) - four)).Store(o);
        (v0 * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(lo, 8)) - four)).Store(o + 8);
        (v1 * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(hi) - four)).Store(o + 16);
        (v1 * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(hi, 8)) - four)).Store(o + 24);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void DequantizeBlockAvx2(byte* s, float* o)
    {
        float d = HalfBits.Lookup(s + 108);
        Vector128<byte> scales = KQuantLanes.UnpackQ3Scales(s + 96);
        Vector256<byte> h = Vector256.Load(s);
        for (int n = 0; n < 2; n++)
        {
            Vector256<byte> low = Vector256.Load(s + 32 + 32 * n);
            for (int j = 0; j < 4; j++)
            {
                int g = 4 * n + j;
                Store32(Biased(low, j, h), d * (scales.GetElement(2 * g) - 32), d * (scales.GetElement(2 * g + 1) - 32), o + 32 * g);
                h = (h.AsUInt16() >>> 1).AsByte();
            }
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

    // The high bit is folded into each byte (q + 4 in 0..7, unsigned for maddubs) and 4·y taken off each pair sum,
    // which leaves exactly ggml's 16-bit pair sums, so every lane and the float order match
    // ggml_vec_dot_q3_K_q8_K (AVX2).
    internal static unsafe float DotQ8KAvx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = w.Length / BlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> s0 = KQuantLanes.Broadcast(0, 1), s1 = KQuantLanes.Broadcast(2, 3);
        Vector256<byte> s2 = KQuantLanes.Broadcast(4, 5), s3 = KQuantLanes.Broadcast(6, 7);
        Vector128<sbyte> bias = Vector128.Create((sbyte)32);
        Vector256<byte> four = Vector256.Create((byte)4);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_K.BlockBytes)
            {
                Vector256<short> sc = Avx2.ConvertToVector256Int16(KQuantLanes.UnpackQ3Scales(pw + 96).AsSByte() - bias);
                sbyte* y = (sbyte*)(px + Q8_K.QsOffset);
                Vector256<byte> sc0 = Vector256.Create(sc.GetLower(), sc.GetLower()).AsByte();
                Vector256<byte> sc1 = Vector256.Create(sc.GetUpper(), sc.GetUpper()).AsByte();
                Vector256<byte> h = Vector256.Load(pw);
                Vector256<byte> low = Vector256.Load(pw + 32);
                Vector256<int> sumi = Group(Biased(low, 0, h), four, y, Avx2.Shuffle(sc0, s0));
                h = (h.AsUInt16() >>> 1).AsByte();
                sumi += Group(Biased(low, 1, h), four, y + 32, Avx2.Shuffle(sc0, s1));
                h = (h.AsUInt16() >>> 1).AsByte();
                sumi += Group(Biased(low, 2, h), four, y + 64, Avx2.Shuffle(sc0, s2));
                h = (h.AsUInt16() >>> 1).AsByte();
                sumi += Group(Biased(low, 3, h), four, y + 96, Avx2.Shuffle(sc0, s3));
                h = (h.AsUInt16() >>> 1).AsByte();
                low = Vector256.Load(pw + 64);
                sumi += Group(Biased(low, 0, h), four, y + 128, Avx2.Shuffle(sc1, s0));
                h = (h.AsUInt16() >>> 1).AsByte();
                sumi += Group(Biased(low, 1, h), four, y + 160, Avx2.Shuffle(sc1, s1));
                h = (h.AsUInt16() >>> 1).AsByte();
                sumi += Group(Biased(low, 2, h), four, y + 192, Avx2.Shuffle(sc1, s2));
                h = (h.AsUInt16() >>> 1).AsByte();
                sumi += Group(Biased(low, 3, h), four, y + 224, Avx2.Shuffle(sc1, s3));
                float d = Unsafe.ReadUnaligned<float>(px) * HalfBits.Lookup(pw + 108);
                acc = Fma.MultiplyAdd(Vector256.Create(d), Avx.ConvertToVector256Single(sumi), acc);
            }
        }
        return F32.SumLanesHalving(acc);
    }

    /// <summary>32 biased quants (q + 4) against 32 activations, the first 16 scaled by the low half of <paramref name="scales"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> Group(Vector256<byte> q, Vector256<byte> four, sbyte* y, Vector256<byte> scales)
    {
        Vector256<sbyte> v = Vector256.Load(y);
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, v) - Avx2.MultiplyAddAdjacent(four, v), scales.AsInt16());
    }
}
