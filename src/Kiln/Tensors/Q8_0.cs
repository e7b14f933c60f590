using System.Runtime.InteropServices;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q8_0: blocks of 32 values stored as <c>{ ggml_half d; int8 qs[32]; }</c> (34 bytes), value = d * qs[i].
/// The quantizer is ggml's quantize_row_q8_0_ref bit for bit (it is also used for activations here; llama.cpp's
/// own AVX activation quantizer rounds ties to even and uses 127/amax, so it can differ from the reference in rare
/// last-bit cases). Integer dots are exact per block.
/// </summary>
public static class Q8_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 34;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q8_0", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.PreferAvx512)
            DequantizeAvx512(src, dst);
        else if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q8_0", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int j = 0; j < BlockSize; j++)
                o[j] = d * (sbyte)block[2 + j];
        }
    }

    /// <summary>ggml's quantize_row_q8_0_ref; the SIMD paths produce the same bytes for every finite input.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q8_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (CpuPaths.PreferAvx512)
            QuantizeAvx512(src, dst);
        else if (CpuPaths.CanAvx2)
            QuantizeAvx2(src, dst);
        else
            QuantizeScalar(src, dst);
    }

    public static void QuantizeScalar(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q8_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            float amax = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = MathF.Abs(x[j]);
                amax = amax > v ? amax : v; // ggml's MAX macro, operand order kept
            }
            float d = amax / 127f;
            float id = d != 0f ? 1.0f / d : 0f;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            for (int j = 0; j < BlockSize; j++)
                block[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
        }
    }

    /// <summary>
    /// Quantizes activations the way llama.cpp's CPU backend does before a Q8_0 or Q5_0 product (quantize_row_q8_0
    /// as built for AVX2): the same d as <see cref="Quantize"/>, but values are multiplied by 127/amax and rounded
    /// half to even. Weights files use the reference rounding instead; activations this way keep Kiln's products of
    /// quantized models on the same side of every rounding boundary as llama.cpp's.
    /// </summary>
    public static void QuantizeActivations(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q8_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (CpuPaths.CanAvx2)
            QuantizeActivationsAvx2(src, dst);
        else
            QuantizeActivationsScalar(src, dst);
    }

    public static void QuantizeActivationsScalar(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q8_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            float amax = 0f;
            for (int j = 0; j < BlockSize; j++)
                amax = MathF.Max(amax, MathF.Abs(x[j]));
            float d = amax / 127f;
            float id = amax != 0f ? 127f / amax : 0f;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            for (int j = 0; j < BlockSize; j++)
                block[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.ToEven);
        }
    }

    /// <summary>Q8_0 weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q8_0", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.PreferAvx512)
            return DotAvx512(w, x);
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per block a float sum of qs[j]*x[j] in order, times d, added to a float total.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q8_0", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        float sum = 0f;
        for (int b = 0; b < x.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<float> xb = x.Slice(b * BlockSize, BlockSize);
            float s = 0f;
            for (int j = 0; j < BlockSize; j++)
                s += (sbyte)block[2 + j] * xb[j];
            sum += s * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
        }
        return sum;
    }

    /// <summary>
    /// Q8_0 weights · Q8_0 activations (ggml_vec_dot_q8_0_q8_0): exact integer dot per block, times d_w*d_x,
    /// summed in float.
    /// </summary>
    public static float DotQ8(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        RowArguments.CheckBlockPair("Q8_0", BlockBytes, w.Length, "Q8_0", BlockBytes, xq.Length, nameof(xq));
        // Measured on Zen 4 (512-bit ops double-pumped): the AVX2 path is as fast or faster here.
        if (CpuPaths.CanAvx2)
            return DotQ8Avx2(w, xq);
        return DotQ8Scalar(w, xq);
    }

    public static float DotQ8Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = RowArguments.CheckBlockPair("Q8_0", BlockBytes, w.Length, "Q8_0", BlockBytes, xq.Length, nameof(xq));
        Span<float> lanes = stackalloc float[F32.Lanes];
        lanes.Clear();
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb)) * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(xb));
            AccumulateLanes(lanes, MemoryMarshal.Cast<byte, sbyte>(wb[2..]), xb[2..], d);
        }
        return F32.SumLanesHalving(lanes);
    }

    /// <summary>
    /// One block's step of the lane order every 32-element quantized dot shares with llama.cpp's AVX2 kernels (the
    /// scalar twins use it): lane k gains d × the exact integer dot of elements 4k..4k+3 of the weight values
    /// <paramref name="w"/> and the activation quants <paramref name="x"/>, by one fused multiply-add.
    /// </summary>
    internal static void AccumulateLanes(Span<float> lanes, ReadOnlySpan<sbyte> w, ReadOnlySpan<byte> x, float d)
    {
        for (int k = 0; k < F32.Lanes; k++)
        {
            int sumi = 0;
            for (int e = 4 * k; e < 4 * k + 4; e++)
                sumi += w[e] * (sbyte)x[e];
            lanes[k] = MathF.FusedMultiplyAdd(sumi, d, lanes[k]);
        }
    }

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
                sbyte* q = (sbyte*)(s + 2);
                (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q))).Store(o);
                (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + 8))).Store(o + 8);
                (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + 16))).Store(o + 16);
                (d * Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + 24))).Store(o + 24);
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
                sbyte* q = (sbyte*)(s + 2);
                (d * Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q)))).Store(o);
                (d * Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q + 16)))).Store(o + 16);
            }
        }
    }

    /// <summary>roundf semantics (halves away from zero) for |v| &lt; 2^23: v - trunc(v) is exact, and trunc of
    /// twice that fraction is ±1 exactly when the fraction reaches ±0.5.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> RoundHalfAwayFromZero(Vector256<float> v)
    {
        Vector256<float> t = Vector256.Truncate(v);
        Vector256<float> frac = v - t;
        return t + Vector256.Truncate(frac + frac);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> RoundHalfAwayFromZero(Vector512<float> v)
    {
        Vector512<float> t = Vector512.Truncate(v);
        Vector512<float> frac = v - t;
        return t + Vector512.Truncate(frac + frac);
    }

    internal static void QuantizeAvx2(ReadOnlySpan<float> src, Span<byte> dst) => QuantizeAvx2(src, dst, activationRounding: false);

    internal static void QuantizeActivationsAvx2(ReadOnlySpan<float> src, Span<byte> dst) => QuantizeAvx2(src, dst, activationRounding: true);

    private static unsafe void QuantizeAvx2(ReadOnlySpan<float> src, Span<byte> dst, bool activationRounding)
    {
        int blocks = src.Length / BlockSize;
        Vector256<int> order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        fixed (float* x0 = src)
        fixed (byte* o0 = dst)
        {
            float* x = x0;
            byte* o = o0;
            for (int b = 0; b < blocks; b++, x += BlockSize, o += BlockBytes)
            {
                Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8);
                Vector256<float> v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
                // max is order-independent for finite values, so the tree reduction equals ggml's running MAX
                Vector256<float> m = Vector256.MaxNative(
                    Vector256.MaxNative(Vector256.Abs(v0), Vector256.Abs(v1)),
                    Vector256.MaxNative(Vector256.Abs(v2), Vector256.Abs(v3)));
                float amax = HorizontalMax(m);
                float d = amax / 127f;
                float id = activationRounding ? (amax != 0f ? 127f / amax : 0f) : d != 0f ? 1.0f / d : 0f;
                Unsafe.WriteUnaligned(o, HalfBits.FromSingle(d));
                Vector256<float> vid = Vector256.Create(id);
                Vector256<int> i0, i1, i2, i3;
                if (activationRounding)
                {
                    i0 = Vector256.ConvertToInt32Native(Vector256.Round(v0 * vid));
                    i1 = Vector256.ConvertToInt32Native(Vector256.Round(v1 * vid));
                    i2 = Vector256.ConvertToInt32Native(Vector256.Round(v2 * vid));
                    i3 = Vector256.ConvertToInt32Native(Vector256.Round(v3 * vid));
                }
                else
                {
                    i0 = Vector256.ConvertToInt32Native(RoundHalfAwayFromZero(v0 * vid));
                    i1 = Vector256.ConvertToInt32Native(RoundHalfAwayFromZero(v1 * vid));
                    i2 = Vector256.ConvertToInt32Native(RoundHalfAwayFromZero(v2 * vid));
                    i3 = Vector256.ConvertToInt32Native(RoundHalfAwayFromZero(v3 * vid));
                }
                // packs work within 128-bit lanes; the dword permute puts the 4-byte groups back in order
                Vector256<sbyte> packed = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(i0, i1), Avx2.PackSignedSaturate(i2, i3));
                Avx2.PermuteVar8x32(packed.AsInt32(), order).AsSByte().Store((sbyte*)(o + 2));
            }
        }
    }

    internal static unsafe void QuantizeAvx512(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = src.Length / BlockSize;
        fixed (float* x0 = src)
        fixed (byte* o0 = dst)
        {
            float* x = x0;
            byte* o = o0;
            for (int b = 0; b < blocks; b++, x += BlockSize, o += BlockBytes)
            {
                Vector512<float> v0 = Vector512.Load(x), v1 = Vector512.Load(x + 16);
                Vector512<float> m = Vector512.MaxNative(Vector512.Abs(v0), Vector512.Abs(v1));
                float amax = HorizontalMax(Vector256.MaxNative(m.GetLower(), m.GetUpper()));
                float d = amax / 127f;
                float id = d != 0f ? 1.0f / d : 0f;
                Unsafe.WriteUnaligned(o, HalfBits.FromSingle(d));
                Vector512<float> vid = Vector512.Create(id);
                Avx512F.ConvertToVector128SByteWithSaturation(Vector512.ConvertToInt32Native(RoundHalfAwayFromZero(v0 * vid)))
                    .Store((sbyte*)(o + 2));
                Avx512F.ConvertToVector128SByteWithSaturation(Vector512.ConvertToInt32Native(RoundHalfAwayFromZero(v1 * vid)))
                    .Store((sbyte*)(o + 18));
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HorizontalMax(Vector256<float> m)
    {
        Vector128<float> m4 = Vector128.MaxNative(m.GetLower(), m.GetUpper());
        m4 = Vector128.MaxNative(m4, Vector128.Shuffle(m4, Vector128.Create(2, 3, 0, 1)));
        m4 = Vector128.MaxNative(m4, Vector128.Shuffle(m4, Vector128.Create(1, 0, 3, 2)));
        return m4.ToScalar();
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
                sbyte* q = (sbyte*)(s + 2);
                Vector256<float> sum = Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q)) * Vector256.Load(xp);
                sum = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + 8)), Vector256.Load(xp + 8), sum);
                sum = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + 16)), Vector256.Load(xp + 16), sum);
                sum = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(q + 24)), Vector256.Load(xp + 24), sum);
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
                sbyte* q = (sbyte*)(s + 2);
                Vector512<float> sum = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q))) * Vector512.Load(xp);
                sum = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Vector128.Load(q + 16))), Vector512.Load(xp + 16), sum);
                acc = Avx512F.FusedMultiplyAdd(sum, Vector512.Create(HalfBits.Lookup(s)), acc);
            }
        }
        return Vector512.Sum(acc);
    }

    // Sign-extending both sides to 16 bits and using vpmaddwd keeps every product exact, -128 included (the
    // maddubs sign trick ggml uses saturates or flips sign when a value is -128).
    /// <remarks>
    /// The order is ggml_vec_dot_q8_0_q8_0's (AVX2), which tinyBLAS also uses for batches: lane k of a block holds
    /// the integer dot of elements 4k..4k+3, each block adds d_w·d_x × lanes into one accumulator by FMA, and the
    /// lanes are summed halving.
    /// </remarks>
    internal static unsafe float DotQ8Avx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = w.Length / BlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += BlockBytes)
                acc = Fma.MultiplyAdd(Vector256.Create(HalfBits.Lookup(pw) * HalfBits.Lookup(px)), BlockDot(pw, px), acc);
        }
        return F32.SumLanesHalving(acc);
    }

    /// <summary>
    /// A 2 × 4 tile of a matrix product: two weight rows (back to back in <paramref name="w"/>) · four activation
    /// rows (<paramref name="activationStride"/> bytes apart) quantized by <see cref="QuantizeActivations"/>;
    /// results[t·2 + r] is bit-identical to <see cref="DotQ8"/> of row r and activation t. Activation bytes must
    /// lie in [−127, 127], as that quantizer guarantees: the maddubs sign trick used here is wrong only for −128.
    /// </summary>
    public static void DotQ8Tile2x4(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq, int activationStride, Span<float> results)
    {
        if (w.Length % 2 != 0 || results.Length < 8)
            throw new ArgumentException("two rows of equal length and eight results are needed", nameof(w));
        int rowBytes = w.Length / 2;
        if (rowBytes % BlockBytes != 0)
            throw new ArgumentException($"a Q8_0 row is a whole number of {BlockBytes}-byte blocks; got {rowBytes} bytes", nameof(w));
        if (activationStride < rowBytes || xq.Length < 3L * activationStride + rowBytes)
            throw new ArgumentException($"four activation rows of {rowBytes} bytes, {activationStride} bytes apart, are needed", nameof(xq));
        if (CpuPaths.CanAvx2)
        {
            DotQ8Tile2x4Avx2(w, rowBytes, xq, activationStride, results);
            return;
        }
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 2; r++)
                results[t * 2 + r] = DotQ8Scalar(w.Slice(r * rowBytes, rowBytes), xq.Slice(t * activationStride, rowBytes));
        }
    }

    internal static unsafe void DotQ8Tile2x4Avx2(ReadOnlySpan<byte> w, int rowBytes, ReadOnlySpan<byte> xq, int stride, Span<float> results)
    {
        int blocks = rowBytes / BlockBytes;
        Vector256<float> a00 = Vector256<float>.Zero, a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        Vector256<short> ones = Vector256.Create((short)1);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq)
        {
            byte* p0 = w0, p1 = w0 + rowBytes, px = x0;
            for (int b = 0; b < blocks; b++, p0 += BlockBytes, p1 += BlockBytes, px += BlockBytes)
            {
                Vector256<sbyte> q0 = Vector256.Load((sbyte*)(p0 + 2)), q1 = Vector256.Load((sbyte*)(p1 + 2));
                Vector256<byte> m0 = Avx2.Abs(q0), m1 = Avx2.Abs(q1);
                float d0 = HalfBits.Lookup(p0), d1 = HalfBits.Lookup(p1);
                Step(px, q0, q1, m0, m1, d0, d1, ones, ref a00, ref a01);
                Step(px + stride, q0, q1, m0, m1, d0, d1, ones, ref a10, ref a11);
                Step(px + 2 * stride, q0, q1, m0, m1, d0, d1, ones, ref a20, ref a21);
                Step(px + 3 * stride, q0, q1, m0, m1, d0, d1, ones, ref a30, ref a31);
            }
        }
        results[0] = F32.SumLanesHalving(a00);
        results[1] = F32.SumLanesHalving(a01);
        results[2] = F32.SumLanesHalving(a10);
        results[3] = F32.SumLanesHalving(a11);
        results[4] = F32.SumLanesHalving(a20);
        results[5] = F32.SumLanesHalving(a21);
        results[6] = F32.SumLanesHalving(a30);
        results[7] = F32.SumLanesHalving(a31);
    }

    /// <summary>
    /// A 4 × 4 tile of a matrix product: four weight rows (<paramref name="rowBytes"/> apart) · four activation rows
    /// (<paramref name="activationStride"/> bytes apart) quantized by <see cref="QuantizeActivations"/>;
    /// results[t·4 + r] is bit-identical to <see cref="DotQ8"/> of row r and activation t. Against the 2 × 4 tile,
    /// each activation block and scale is loaded once for four rows instead of two, and the block scale products
    /// d_w·d_x are one vector multiply of two broadcasts made once per row or token. Activation bytes must lie in
    /// [−127, 127] (the maddubs sign trick).
    /// </summary>
    public static void DotQ8Tile4x4(ReadOnlySpan<byte> w, int rowBytes, ReadOnlySpan<byte> xq, int activationStride, Span<float> results)
    {
        if (rowBytes <= 0 || rowBytes % BlockBytes != 0 || w.Length < 4L * rowBytes || results.Length < 16)
            throw new ArgumentException($"four rows of whole {BlockBytes}-byte blocks and 16 results are needed; got rows of {rowBytes} bytes", nameof(w));
        if (activationStride < rowBytes || xq.Length < 3L * activationStride + rowBytes)
            throw new ArgumentException($"four activation rows of {rowBytes} bytes, {activationStride} bytes apart, are needed", nameof(xq));
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = w)
                fixed (byte* px = xq)
                fixed (float* pr = results)
                    DotQ8Tile4x4Avx2(pw, rowBytes, px, activationStride, pr);
            }
            return;
        }
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 4; r++)
                results[t * 4 + r] = DotQ8Scalar(w.Slice(r * rowBytes, rowBytes), xq.Slice(t * activationStride, rowBytes));
        }
    }

    internal static unsafe void DotQ8Tile4x4Avx2(byte* w, int rowBytes, byte* xq, int stride, float* results)
    {
        var acc = new Tile4x4Accumulators();
        Vector256<short> ones = Vector256.Create((short)1);
        byte* p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, px = xq;
        for (nint o = 0, end = rowBytes; o < end; o += BlockBytes, px += BlockBytes)
        {
            Vector256<sbyte> q0 = Vector256.Load((sbyte*)(p0 + o + 2)), q1 = Vector256.Load((sbyte*)(p1 + o + 2));
            Vector256<sbyte> q2 = Vector256.Load((sbyte*)(p2 + o + 2)), q3 = Vector256.Load((sbyte*)(p3 + o + 2));
            var rows = new Tile4Rows(q0, q1, q2, q3, Avx2.Abs(q0), Avx2.Abs(q1), Avx2.Abs(q2), Avx2.Abs(q3),
                Vector256.Create(HalfBits.Lookup(p0 + o)), Vector256.Create(HalfBits.Lookup(p1 + o)),
                Vector256.Create(HalfBits.Lookup(p2 + o)), Vector256.Create(HalfBits.Lookup(p3 + o)));
            Tile4Token(px, in rows, ones, ref acc.A00, ref acc.A01, ref acc.A02, ref acc.A03);
            Tile4Token(px + stride, in rows, ones, ref acc.A10, ref acc.A11, ref acc.A12, ref acc.A13);
            Tile4Token(px + 2 * stride, in rows, ones, ref acc.A20, ref acc.A21, ref acc.A22, ref acc.A23);
            Tile4Token(px + 3 * stride, in rows, ones, ref acc.A30, ref acc.A31, ref acc.A32, ref acc.A33);
        }
        results[0] = F32.SumLanesHalving(acc.A00);
        results[1] = F32.SumLanesHalving(acc.A01);
        results[2] = F32.SumLanesHalving(acc.A02);
        results[3] = F32.SumLanesHalving(acc.A03);
        results[4] = F32.SumLanesHalving(acc.A10);
        results[5] = F32.SumLanesHalving(acc.A11);
        results[6] = F32.SumLanesHalving(acc.A12);
        results[7] = F32.SumLanesHalving(acc.A13);
        results[8] = F32.SumLanesHalving(acc.A20);
        results[9] = F32.SumLanesHalving(acc.A21);
        results[10] = F32.SumLanesHalving(acc.A22);
        results[11] = F32.SumLanesHalving(acc.A23);
        results[12] = F32.SumLanesHalving(acc.A30);
        results[13] = F32.SumLanesHalving(acc.A31);
        results[14] = F32.SumLanesHalving(acc.A32);
        results[15] = F32.SumLanesHalving(acc.A33);
    }

    /// <summary>One block of four weight rows: the quants, their magnitudes and each row's scale in every lane.</summary>
    private readonly record struct Tile4Rows(Vector256<sbyte> Q0, Vector256<sbyte> Q1, Vector256<sbyte> Q2, Vector256<sbyte> Q3,
        Vector256<byte> M0, Vector256<byte> M1, Vector256<byte> M2, Vector256<byte> M3,
        Vector256<float> D0, Vector256<float> D1, Vector256<float> D2, Vector256<float> D3);

    /// <summary>The sixteen accumulators of a 4 × 4 tile, token-major.</summary>
    private struct Tile4x4Accumulators
    {
        public Vector256<float> A00, A01, A02, A03, A10, A11, A12, A13, A20, A21, A22, A23, A30, A31, A32, A33;
    }

    /// <summary>One token's block against four rows: each row's FMA step of <see cref="DotQ8Avx2"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Tile4Token(byte* px, in Tile4Rows rows, Vector256<short> ones,
        ref Vector256<float> acc0, ref Vector256<float> acc1, ref Vector256<float> acc2, ref Vector256<float> acc3)
    {
        Vector256<sbyte> y = Vector256.Load((sbyte*)(px + 2));
        Vector256<float> dx = Vector256.Create(HalfBits.Lookup(px));
        acc0 = Fma.MultiplyAdd(rows.D0 * dx, SignedSums(rows.M0, y, rows.Q0, ones), acc0);
        acc1 = Fma.MultiplyAdd(rows.D1 * dx, SignedSums(rows.M1, y, rows.Q1, ones), acc1);
        acc2 = Fma.MultiplyAdd(rows.D2 * dx, SignedSums(rows.M2, y, rows.Q2, ones), acc2);
        acc3 = Fma.MultiplyAdd(rows.D3 * dx, SignedSums(rows.M3, y, rows.Q3, ones), acc3);
    }

    /// <summary>|w| × (y with w's sign): BlockDot's lane sums exactly, as floats, for y in [−127, 127].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SignedSums(Vector256<byte> magnitude, Vector256<sbyte> y, Vector256<sbyte> q, Vector256<short> ones) =>
        Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitude, Avx2.Sign(y, q)), ones));

    /// <summary>
    /// Four weight rows, <paramref name="rowBytes"/> apart in <paramref name="w"/>, · one activation row quantized by
    /// <see cref="QuantizeActivations"/> (bytes in [−127, 127]); results[r] is bit-identical to <see cref="DotQ8"/>
    /// of row r. Four independent FMA chains instead of one keep the FMA latency off the critical path of decoding,
    /// and the activation block is loaded once for the four rows.
    /// </summary>
    public static void DotQ8Rows4(ReadOnlySpan<byte> w, int rowBytes, ReadOnlySpan<byte> xq, Span<float> results)
    {
        int blocks = RowArguments.CheckBlockPair("Q8_0", BlockBytes, rowBytes, "Q8_0", BlockBytes, xq.Length, nameof(xq));
        if (rowBytes <= 0 || w.Length < 4L * rowBytes || results.Length < 4)
            throw new ArgumentException($"four rows of {rowBytes} bytes and four results are needed", nameof(w));
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = w)
                fixed (byte* px = xq)
                fixed (float* pr = results)
                    DotQ8Rows4Avx2(pw, rowBytes, px, blocks, pr);
            }
            return;
        }
        for (int r = 0; r < 4; r++)
            results[r] = DotQ8Scalar(w.Slice(r * rowBytes, rowBytes), xq);
    }

    internal static unsafe void DotQ8Rows4Avx2(byte* w, int rowBytes, byte* xq, int blocks, float* results)
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        Vector256<short> ones = Vector256.Create((short)1);
        byte* p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes, px = xq;
        // Four rows are four short streams, which the hardware prefetchers follow poorly; the next four rows are one
        // contiguous run right after them, so fetch it ahead, four bytes of it per byte of a row consumed here.
        byte* ahead = w + 4L * rowBytes;
        for (nint o = 0, end = (nint)blocks * BlockBytes; o < end; o += BlockBytes, px += BlockBytes)
        {
            Sse.Prefetch0(ahead + 4 * o);
            Sse.Prefetch0(ahead + 4 * o + 64);
            Sse.Prefetch0(ahead + 4 * o + 128);
            Vector256<sbyte> y = Vector256.Load((sbyte*)(px + 2));
            float dx = HalfBits.Lookup(px);
            a0 = RowStep(p0 + o, y, dx, ones, a0);
            a1 = RowStep(p1 + o, y, dx, ones, a1);
            a2 = RowStep(p2 + o, y, dx, ones, a2);
            a3 = RowStep(p3 + o, y, dx, ones, a3);
        }
        results[0] = F32.SumLanesHalving(a0);
        results[1] = F32.SumLanesHalving(a1);
        results[2] = F32.SumLanesHalving(a2);
        results[3] = F32.SumLanesHalving(a3);
    }

    /// <summary>One weight block's FMA step: |w| × (y with w's sign) gives BlockDot's lane sums exactly for y in [−127, 127].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<float> RowStep(byte* pw, Vector256<sbyte> y, float dx, Vector256<short> ones, Vector256<float> acc)
    {
        Vector256<sbyte> q = Vector256.Load((sbyte*)(pw + 2));
        Vector256<float> s = Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(q), Avx2.Sign(y, q)), ones));
        return Fma.MultiplyAdd(Vector256.Create(HalfBits.Lookup(pw) * dx), s, acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Step(byte* px, Vector256<sbyte> q0, Vector256<sbyte> q1, Vector256<byte> m0, Vector256<byte> m1,
        float d0, float d1, Vector256<short> ones, ref Vector256<float> acc0, ref Vector256<float> acc1)
    {
        Vector256<sbyte> y = Vector256.Load((sbyte*)(px + 2));
        float dx = HalfBits.Lookup(px);
        // |w| × (y with w's sign): the same 4-element lane sums as BlockDot, exactly, for y in [-127, 127]
        Vector256<float> s0 = Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(m0, Avx2.Sign(y, q0)), ones));
        Vector256<float> s1 = Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(m1, Avx2.Sign(y, q1)), ones));
        acc0 = Fma.MultiplyAdd(Vector256.Create(d0 * dx), s0, acc0);
        acc1 = Fma.MultiplyAdd(Vector256.Create(d1 * dx), s1, acc1);
    }

    /// <summary>
    /// The integer dot of two blocks' quants, elements 4k..4k+3 in lane k, as floats. Widening to 16 bits keeps it
    /// exact for every byte (maddubs with |w| and a sign-moved x would overflow when both are −128); one
    /// horizontal add and a qword permute then pair the 2-element sums into 4-element ones in order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<float> BlockDot(byte* pw, byte* px)
    {
        Vector256<int> lo = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16((sbyte*)(pw + 2)), Avx2.ConvertToVector256Int16((sbyte*)(px + 2)));
        Vector256<int> hi = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16((sbyte*)(pw + 18)), Avx2.ConvertToVector256Int16((sbyte*)(px + 18)));
        // hadd works per 128-bit half: [q0 q1 q4 q5 | q2 q3 q6 q7]; qwords 0,2,1,3 restore q0..q7
        Vector256<int> quads = Avx2.Permute4x64(Avx2.HorizontalAdd(lo, hi).AsInt64(), 0b11_01_10_00).AsInt32();
        return Avx.ConvertToVector256Single(quads);
    }

    internal static unsafe float DotQ8Avx512(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq)
    {
        int blocks = w.Length / BlockBytes;
        Vector512<float> acc = Vector512<float>.Zero;
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += BlockBytes)
            {
                Vector512<int> p = Avx512BW.MultiplyAddAdjacent(
                    Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(pw + 2))),
                    Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(px + 2))));
                float d = HalfBits.Lookup(pw) * HalfBits.Lookup(px);
                acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(p), Vector512.Create(d), acc);
            }
        }
        return Vector512.Sum(acc);
    }
}
