using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// ggml Q4_0: blocks of 32 values stored as <c>{ ggml_half d; uint8 qs[16]; }</c> (18 bytes). Element j (0..15)
/// is (qs[j] &amp; 0x0F) - 8 and element j+16 is (qs[j] &gt;&gt; 4) - 8, each times d. The quantizer is ggml's
/// quantize_row_q4_0_ref bit for bit; dots against Q8_0 activations are exact integers per block.
/// </summary>
public static class Q4_0
{
    public const int BlockSize = 32;
    public const int BlockBytes = 18;

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q4_0", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        if (CpuPaths.PreferAvx512)
            DequantizeAvx512(src, dst);
        else if (CpuPaths.CanAvx2)
            DequantizeAvx2(src, dst);
        else
            DequantizeScalar(src, dst);
    }

    public static void DequantizeScalar(ReadOnlySpan<byte> src, Span<float> dst)
    {
        RowArguments.CheckBlocks("Q4_0", BlockSize, BlockBytes, src.Length, dst.Length, nameof(src));
        for (int b = 0; b < dst.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = src.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            Span<float> o = dst.Slice(b * BlockSize, BlockSize);
            for (int j = 0; j < 16; j++)
            {
                o[j] = ((block[2 + j] & 0x0F) - 8) * d;
                o[j + 16] = ((block[2 + j] >> 4) - 8) * d;
            }
        }
    }

    /// <summary>
    /// quantize_row_q4_0_impl: <paramref name="importance"/> (an imatrix's per-column weights, one per element)
    /// weighs the rounding error; without it (empty) the reference quantizer.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        if (importance.IsEmpty)
        {
            Quantize(src, dst);
            return;
        }
        RowArguments.CheckBlocks("Q4_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        LegacyImportanceQuantizer.Quantize(src, dst, importance, bits: 4, affine: false, BlockBytes);
    }

    /// <summary>ggml's quantize_row_q4_0_ref; the SIMD paths produce the same bytes for every finite input.</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q4_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        if (CpuPaths.CanAvx2)
            QuantizeAvx2(src, dst);
        else
            QuantizeScalar(src, dst);
    }

    public static void QuantizeScalar(ReadOnlySpan<float> src, Span<byte> dst)
    {
        RowArguments.CheckBlocks("Q4_0", BlockSize, BlockBytes, dst.Length, src.Length, nameof(dst));
        for (int b = 0; b < src.Length / BlockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * BlockSize, BlockSize);
            Span<byte> block = dst.Slice(b * BlockBytes, BlockBytes);
            // the signed value of largest magnitude, first one on ties; it maps to -8 exactly
            float amax = 0f, max = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                if (amax < MathF.Abs(x[j]))
                {
                    amax = MathF.Abs(x[j]);
                    max = x[j];
                }
            }
            float d = max / -8f;
            float id = d != 0f ? 1.0f / d : 0f;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            for (int j = 0; j < 16; j++)
            {
                int q0 = Math.Min(15, (int)(sbyte)(x[j] * id + 8.5f));
                int q1 = Math.Min(15, (int)(sbyte)(x[j + 16] * id + 8.5f));
                block[2 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    /// <summary>Q4_0 weights row · float activations.</summary>
    public static float Dot(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q4_0", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        if (CpuPaths.PreferAvx512)
            return DotAvx512(w, x);
        if (CpuPaths.CanAvx2)
            return DotAvx2(w, x);
        return DotScalar(w, x);
    }

    /// <summary>Reference: per block a float sum of q[j]*x[j] in element order, times d, added to a float total.</summary>
    public static float DotScalar(ReadOnlySpan<byte> w, ReadOnlySpan<float> x)
    {
        RowArguments.CheckBlocks("Q4_0", BlockSize, BlockBytes, w.Length, x.Length, nameof(w));
        float sum = 0f;
        for (int b = 0; b < x.Length / BlockSize; b++)
        {
            ReadOnlySpan<byte> block = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<float> xb = x.Slice(b * BlockSize, BlockSize);
            float s = 0f;
            for (int j = 0; j < 16; j++)
                s += ((block[2 + j] & 0x0F) - 8) * xb[j];
            for (int j = 0; j < 16; j++)
                s += ((block[2 + j] >> 4) - 8) * xb[j + 16];
            sum += s * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
        }
        return sum;
    }

    /// <summary>
    /// Q4_0 weights · Q8_0 activations (ggml_vec_dot_q4_0_q8_0): exact integer dot per block, times d_w*d_x,
    /// summed in float.
    /// </summary>
    public static float DotQ8(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        RowArguments.CheckBlockPair("Q4_0", BlockBytes, w.Length, "Q8_0", Q8_0.BlockBytes, xq8.Length, nameof(xq8));
        // Measured on Zen 4 (512-bit ops double-pumped): the AVX2 path is as fast or faster here.
        if (CpuPaths.CanAvx2)
            return DotQ8Avx2(w, xq8);
        return DotQ8Scalar(w, xq8);
    }

    public static float DotQ8Scalar(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = RowArguments.CheckBlockPair("Q4_0", BlockBytes, w.Length, "Q8_0", Q8_0.BlockBytes, xq8.Length, nameof(xq8));
        float sum = 0f;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> wb = w.Slice(b * BlockBytes, BlockBytes);
            ReadOnlySpan<byte> xb = xq8.Slice(b * Q8_0.BlockBytes, Q8_0.BlockBytes);
            int sumi = 0;
            for (int j = 0; j < 16; j++)
            {
                sumi += ((wb[2 + j] & 0x0F) - 8) * (sbyte)xb[2 + j];
                sumi += ((wb[2 + j] >> 4) - 8) * (sbyte)xb[18 + j];
            }
            // one FMA per block, as the SIMD paths (and llama.cpp's repacked kernels) do: the same bits
            sum = MathF.FusedMultiplyAdd(sumi, HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(wb))
                                               * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(xb)), sum);
        }
        return sum;
    }

    /// <summary>
    /// What the unsigned-nibble products over-count per activation block: 8 × the block's sum of Q8_0 values
    /// (<paramref name="offsets"/>[b] for block b). Computed once per activation row, it turns each row's
    /// Σ nibble·y into the signed dot Σ (nibble − 8)·y with one subtraction per block.
    /// </summary>
    public static void ActivationOffsets(ReadOnlySpan<byte> xq8, Span<int> offsets)
    {
        if (xq8.Length % Q8_0.BlockBytes != 0 || offsets.Length < xq8.Length / Q8_0.BlockBytes)
            throw new ArgumentException($"whole Q8_0 blocks and one offset per block are needed; got {xq8.Length} bytes, {offsets.Length} offsets", nameof(offsets));
        for (int b = 0; b < xq8.Length / Q8_0.BlockBytes; b++)
        {
            int s = 0;
            foreach (sbyte v in MemoryMarshal.Cast<byte, sbyte>(xq8.Slice(b * Q8_0.BlockBytes + 2, Q8_0.BlockSize)))
                s += v;
            offsets[b] = 8 * s;
        }
    }

    /// <summary>
    /// Eight weight rows, <paramref name="rowBytes"/> apart in <paramref name="w"/>, · one Q8_0 activation row:
    /// results[r] is bit-identical to <see cref="DotQ8"/> of row r. Row r's FMA chain runs in lane r, so the eight
    /// chains cost one vector FMA per block; the rows' nibbles are transposed in registers (dword j of row r to
    /// lane r) so that one broadcast activation dword serves all eight rows, and no horizontal sums are needed.
    /// This is the layout llama.cpp's Q4_0 8×8 repacking builds at load time, built here on the fly from the
    /// mapped file instead. <paramref name="offsets"/> comes from <see cref="ActivationOffsets"/>.
    /// </summary>
    public static void DotQ8Rows8(ReadOnlySpan<byte> w, int rowBytes, ReadOnlySpan<byte> xq8, ReadOnlySpan<int> offsets, Span<float> results)
    {
        int blocks = RowArguments.CheckBlockPair("Q4_0", BlockBytes, rowBytes, "Q8_0", Q8_0.BlockBytes, xq8.Length, nameof(xq8));
        if (rowBytes <= 0 || w.Length < 7L * rowBytes + rowBytes || results.Length < 8 || offsets.Length < blocks)
            throw new ArgumentException($"eight rows of {rowBytes} bytes, one offset per block and eight results are needed", nameof(w));
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = w)
                fixed (byte* px = xq8)
                fixed (int* po = offsets)
                fixed (float* pr = results)
                    DotQ8Rows8Avx2(pw, rowBytes, px, po, blocks, pr);
            }
            return;
        }
        for (int r = 0; r < 8; r++)
            results[r] = DotQ8Scalar(w.Slice(r * rowBytes, rowBytes), xq8);
    }

    // Straight to optimized code: tier-0 code of these kernels calls the vector helpers instead of inlining them and
    // is several times slower, and on a loaded machine a serving process was profiled still running it after a minute.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void DotQ8Rows8Avx2(byte* w, int rowBytes, byte* xq8, int* offsets, int blocks, float* results)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        byte* p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes;
        byte* p4 = p3 + rowBytes, p5 = p4 + rowBytes, p6 = p5 + rowBytes, p7 = p6 + rowBytes;
        byte* px = xq8;
        // The eight rows are 8 short streams, which the hardware prefetchers follow poorly; the next eight rows are
        // one contiguous run right after them, so fetch it ahead, eight bytes of it per byte of a row consumed here.
        byte* ahead = w + 8L * rowBytes;
        for (nint o = 0, end = (nint)blocks * BlockBytes; o < end; o += BlockBytes, px += Q8_0.BlockBytes, offsets++)
        {
            Sse.Prefetch0(ahead + 8 * o);
            Sse.Prefetch0(ahead + 8 * o + 64);
            Sse.Prefetch0(ahead + 8 * o + 128);
            Vector256<int> sumi = RowSums8(p0 + o, p1 + o, p2 + o, p3 + o, p4 + o, p5 + o, p6 + o, p7 + o, px + 2, mask, ones)
                                  - Vector256.Create(*offsets);
            Vector128<ushort> d = Vector128.Create(
                *(ushort*)(p0 + o), *(ushort*)(p1 + o), *(ushort*)(p2 + o), *(ushort*)(p3 + o),
                *(ushort*)(p4 + o), *(ushort*)(p5 + o), *(ushort*)(p6 + o), *(ushort*)(p7 + o));
            Vector256<float> scales = HalfBits.ToSingle(Avx2.ConvertToVector256Int32(d).AsUInt32()) * Vector256.Create(HalfBits.Lookup(px));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), scales, acc);
        }
        acc.Store(results);
    }

    /// <summary>
    /// An 8 × 4 tile of a matrix product: eight weight rows (<paramref name="rowBytes"/> apart) · four Q8_0
    /// activation rows (<paramref name="activationStride"/> bytes apart, their offsets <paramref name="offsetStride"/>
    /// ints apart); results[t·8 + r] is bit-identical to <see cref="DotQ8"/> of row r and activation t. The
    /// transposed nibbles and the eight row scales are built once per block and serve all four tokens.
    /// </summary>
    public static void DotQ8Tile8x4(ReadOnlySpan<byte> w, int rowBytes, ReadOnlySpan<byte> xq8, int activationStride,
        ReadOnlySpan<int> offsets, int offsetStride, Span<float> results)
    {
        if (rowBytes <= 0 || rowBytes % BlockBytes != 0 || w.Length < 8L * rowBytes || results.Length < 32)
            throw new ArgumentException($"eight rows of whole {BlockBytes}-byte blocks and 32 results are needed; got rows of {rowBytes} bytes", nameof(w));
        int blocks = rowBytes / BlockBytes;
        int activationBytes = blocks * Q8_0.BlockBytes;
        if (activationStride < activationBytes || xq8.Length < 3L * activationStride + activationBytes)
            throw new ArgumentException($"four activation rows of {activationBytes} bytes, {activationStride} bytes apart, are needed", nameof(xq8));
        if (offsetStride < blocks || offsets.Length < 3L * offsetStride + blocks)
            throw new ArgumentException($"four rows of {blocks} offsets, {offsetStride} apart, are needed", nameof(offsets));
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = w)
                fixed (byte* px = xq8)
                fixed (int* po = offsets)
                fixed (float* pr = results)
                    DotQ8Tile8x4Avx2(pw, rowBytes, px, activationStride, po, offsetStride, blocks, pr);
            }
            return;
        }
        for (int t = 0; t < 4; t++)
        {
            for (int r = 0; r < 8; r++)
                results[t * 8 + r] = DotQ8Scalar(w.Slice(r * rowBytes, rowBytes), xq8.Slice(t * activationStride, activationBytes));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // see DotQ8Rows8Avx2
    internal static unsafe void DotQ8Tile8x4Avx2(byte* w, int rowBytes, byte* xq8, int stride, int* offsets, int offsetStride, int blocks, float* results)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        byte* p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes;
        byte* p4 = p3 + rowBytes, p5 = p4 + rowBytes, p6 = p5 + rowBytes, p7 = p6 + rowBytes;
        byte* px = xq8;
        byte* ahead = w + 8L * rowBytes; // see DotQ8Rows8Avx2
        for (nint o = 0, end = (nint)blocks * BlockBytes; o < end; o += BlockBytes, px += Q8_0.BlockBytes, offsets++)
        {
            Sse.Prefetch0(ahead + 8 * o);
            Sse.Prefetch0(ahead + 8 * o + 64);
            Sse.Prefetch0(ahead + 8 * o + 128);
            Vector256<uint> a = Vector256.Create(Vector128.Load((uint*)(p0 + o + 2)), Vector128.Load((uint*)(p4 + o + 2)));
            Vector256<uint> b = Vector256.Create(Vector128.Load((uint*)(p1 + o + 2)), Vector128.Load((uint*)(p5 + o + 2)));
            Vector256<uint> c = Vector256.Create(Vector128.Load((uint*)(p2 + o + 2)), Vector128.Load((uint*)(p6 + o + 2)));
            Vector256<uint> e = Vector256.Create(Vector128.Load((uint*)(p3 + o + 2)), Vector128.Load((uint*)(p7 + o + 2)));
            Vector256<ulong> t0 = Avx2.UnpackLow(a, b).AsUInt64(), t1 = Avx2.UnpackHigh(a, b).AsUInt64();
            Vector256<ulong> t2 = Avx2.UnpackLow(c, e).AsUInt64(), t3 = Avx2.UnpackHigh(c, e).AsUInt64();
            Vector256<byte> q0 = Avx2.UnpackLow(t0, t2).AsByte(), q1 = Avx2.UnpackHigh(t0, t2).AsByte();
            Vector256<byte> q2 = Avx2.UnpackLow(t1, t3).AsByte(), q3 = Avx2.UnpackHigh(t1, t3).AsByte();
            Vector256<byte> l0 = q0 & mask, l1 = q1 & mask, l2 = q2 & mask, l3 = q3 & mask;
            Vector256<byte> h0 = (q0.AsUInt16() >>> 4).AsByte() & mask, h1 = (q1.AsUInt16() >>> 4).AsByte() & mask;
            Vector256<byte> h2 = (q2.AsUInt16() >>> 4).AsByte() & mask, h3 = (q3.AsUInt16() >>> 4).AsByte() & mask;
            Vector128<ushort> d = Vector128.Create(
                *(ushort*)(p0 + o), *(ushort*)(p1 + o), *(ushort*)(p2 + o), *(ushort*)(p3 + o),
                *(ushort*)(p4 + o), *(ushort*)(p5 + o), *(ushort*)(p6 + o), *(ushort*)(p7 + o));
            Vector256<float> rowScales = HalfBits.ToSingle(Avx2.ConvertToVector256Int32(d).AsUInt32());
            acc0 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px, offsets, ones, acc0);
            acc1 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + stride, offsets + offsetStride, ones, acc1);
            acc2 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 2 * stride, offsets + 2 * offsetStride, ones, acc2);
            acc3 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 3 * stride, offsets + 3 * offsetStride, ones, acc3);
        }
        acc0.Store(results);
        acc1.Store(results + 8);
        acc2.Store(results + 16);
        acc3.Store(results + 24);
    }

    /// <summary>
    /// An 8 × 8 tile: as <see cref="DotQ8Tile8x4"/> with eight activation rows, so each block's nibbles are
    /// transposed and unpacked once for eight tokens instead of four (decode steps of eight sequences, prompt
    /// batches). results[t·8 + r] is bit-identical to <see cref="DotQ8"/> of row r and activation t.
    /// </summary>
    public static void DotQ8Tile8x8(ReadOnlySpan<byte> w, int rowBytes, ReadOnlySpan<byte> xq8, int activationStride,
        ReadOnlySpan<int> offsets, int offsetStride, Span<float> results)
    {
        if (rowBytes <= 0 || rowBytes % BlockBytes != 0 || w.Length < 8L * rowBytes || results.Length < 64)
            throw new ArgumentException($"eight rows of whole {BlockBytes}-byte blocks and 64 results are needed; got rows of {rowBytes} bytes", nameof(w));
        int blocks = rowBytes / BlockBytes;
        int activationBytes = blocks * Q8_0.BlockBytes;
        if (activationStride < activationBytes || xq8.Length < 7L * activationStride + activationBytes)
            throw new ArgumentException($"eight activation rows of {activationBytes} bytes, {activationStride} bytes apart, are needed", nameof(xq8));
        if (offsetStride < blocks || offsets.Length < 7L * offsetStride + blocks)
            throw new ArgumentException($"eight rows of {blocks} offsets, {offsetStride} apart, are needed", nameof(offsets));
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = w)
                fixed (byte* px = xq8)
                fixed (int* po = offsets)
                fixed (float* pr = results)
                    DotQ8Tile8x8Avx2(pw, rowBytes, px, activationStride, po, offsetStride, blocks, pr);
            }
            return;
        }
        for (int t = 0; t < 8; t++)
        {
            for (int r = 0; r < 8; r++)
                results[t * 8 + r] = DotQ8Scalar(w.Slice(r * rowBytes, rowBytes), xq8.Slice(t * activationStride, activationBytes));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // see DotQ8Rows8Avx2
    internal static unsafe void DotQ8Tile8x8Avx2(byte* w, int rowBytes, byte* xq8, int stride, int* offsets, int offsetStride, int blocks, float* results)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<float> acc4 = acc0, acc5 = acc0, acc6 = acc0, acc7 = acc0;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        byte* p0 = w, p1 = w + rowBytes, p2 = p1 + rowBytes, p3 = p2 + rowBytes;
        byte* p4 = p3 + rowBytes, p5 = p4 + rowBytes, p6 = p5 + rowBytes, p7 = p6 + rowBytes;
        byte* px = xq8;
        byte* ahead = w + 8L * rowBytes; // see DotQ8Rows8Avx2
        for (nint o = 0, end = (nint)blocks * BlockBytes; o < end; o += BlockBytes, px += Q8_0.BlockBytes, offsets++)
        {
            Sse.Prefetch0(ahead + 8 * o);
            Sse.Prefetch0(ahead + 8 * o + 64);
            Sse.Prefetch0(ahead + 8 * o + 128);
            Vector256<uint> a = Vector256.Create(Vector128.Load((uint*)(p0 + o + 2)), Vector128.Load((uint*)(p4 + o + 2)));
            Vector256<uint> b = Vector256.Create(Vector128.Load((uint*)(p1 + o + 2)), Vector128.Load((uint*)(p5 + o + 2)));
            Vector256<uint> c = Vector256.Create(Vector128.Load((uint*)(p2 + o + 2)), Vector128.Load((uint*)(p6 + o + 2)));
            Vector256<uint> e = Vector256.Create(Vector128.Load((uint*)(p3 + o + 2)), Vector128.Load((uint*)(p7 + o + 2)));
            Vector256<ulong> t0 = Avx2.UnpackLow(a, b).AsUInt64(), t1 = Avx2.UnpackHigh(a, b).AsUInt64();
            Vector256<ulong> t2 = Avx2.UnpackLow(c, e).AsUInt64(), t3 = Avx2.UnpackHigh(c, e).AsUInt64();
            Vector256<byte> q0 = Avx2.UnpackLow(t0, t2).AsByte(), q1 = Avx2.UnpackHigh(t0, t2).AsByte();
            Vector256<byte> q2 = Avx2.UnpackLow(t1, t3).AsByte(), q3 = Avx2.UnpackHigh(t1, t3).AsByte();
            Vector256<byte> l0 = q0 & mask, l1 = q1 & mask, l2 = q2 & mask, l3 = q3 & mask;
            Vector256<byte> h0 = (q0.AsUInt16() >>> 4).AsByte() & mask, h1 = (q1.AsUInt16() >>> 4).AsByte() & mask;
            Vector256<byte> h2 = (q2.AsUInt16() >>> 4).AsByte() & mask, h3 = (q3.AsUInt16() >>> 4).AsByte() & mask;
            Vector128<ushort> d = Vector128.Create(
                *(ushort*)(p0 + o), *(ushort*)(p1 + o), *(ushort*)(p2 + o), *(ushort*)(p3 + o),
                *(ushort*)(p4 + o), *(ushort*)(p5 + o), *(ushort*)(p6 + o), *(ushort*)(p7 + o));
            Vector256<float> rowScales = HalfBits.ToSingle(Avx2.ConvertToVector256Int32(d).AsUInt32());
            acc0 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px, offsets, ones, acc0);
            acc1 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + stride, offsets + offsetStride, ones, acc1);
            acc2 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 2 * stride, offsets + 2 * offsetStride, ones, acc2);
            acc3 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 3 * stride, offsets + 3 * offsetStride, ones, acc3);
            acc4 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 4 * stride, offsets + 4 * offsetStride, ones, acc4);
            acc5 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 5 * stride, offsets + 5 * offsetStride, ones, acc5);
            acc6 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 6 * stride, offsets + 6 * offsetStride, ones, acc6);
            acc7 = TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 7 * stride, offsets + 7 * offsetStride, ones, acc7);
        }
        acc0.Store(results);
        acc1.Store(results + 8);
        acc2.Store(results + 16);
        acc3.Store(results + 24);
        acc4.Store(results + 32);
        acc5.Store(results + 40);
        acc6.Store(results + 48);
        acc7.Store(results + 56);
    }

    /// <summary>One token's block against eight unpacked rows: the rows' FMA step for that token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<float> TokenStep(Vector256<byte> l0, Vector256<byte> l1, Vector256<byte> l2, Vector256<byte> l3,
        Vector256<byte> h0, Vector256<byte> h1, Vector256<byte> h2, Vector256<byte> h3,
        Vector256<float> rowScales, byte* px, int* offset, Vector256<short> ones, Vector256<float> acc)
    {
        byte* y = px + 2;
        Vector256<short> s = Avx2.MultiplyAddAdjacent(l0, Vector256.Create(*(int*)y).AsSByte())
                           + Avx2.MultiplyAddAdjacent(h0, Vector256.Create(*(int*)(y + 16)).AsSByte())
                           + Avx2.MultiplyAddAdjacent(l1, Vector256.Create(*(int*)(y + 4)).AsSByte())
                           + Avx2.MultiplyAddAdjacent(h1, Vector256.Create(*(int*)(y + 20)).AsSByte())
                           + Avx2.MultiplyAddAdjacent(l2, Vector256.Create(*(int*)(y + 8)).AsSByte())
                           + Avx2.MultiplyAddAdjacent(h2, Vector256.Create(*(int*)(y + 24)).AsSByte())
                           + Avx2.MultiplyAddAdjacent(l3, Vector256.Create(*(int*)(y + 12)).AsSByte())
                           + Avx2.MultiplyAddAdjacent(h3, Vector256.Create(*(int*)(y + 28)).AsSByte());
        Vector256<int> sumi = Avx2.MultiplyAddAdjacent(s, ones) - Vector256.Create(*offset);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), rowScales * Vector256.Create(HalfBits.Lookup(px)), acc);
    }

    /// <summary>
    /// Σ nibble·y over one block for eight rows (lane r = row r; the block's qs at p0..p7, the activation values
    /// at y). Each row's 16 bytes are four dwords; a 4 × 4 dword transpose per 128-bit half puts dword j of every
    /// row in one vector, whose low and high nibbles meet the broadcast activation dwords j and j + 4. Eight
    /// maddubs pair sums add up in 16 bits without overflow (8 · 2 · 15 · 128 = 30720).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> RowSums8(byte* p0, byte* p1, byte* p2, byte* p3, byte* p4, byte* p5, byte* p6, byte* p7,
        byte* y, Vector256<byte> mask, Vector256<short> ones)
    {
        Vector256<uint> a = Vector256.Create(Vector128.Load((uint*)(p0 + 2)), Vector128.Load((uint*)(p4 + 2)));
        Vector256<uint> b = Vector256.Create(Vector128.Load((uint*)(p1 + 2)), Vector128.Load((uint*)(p5 + 2)));
        Vector256<uint> c = Vector256.Create(Vector128.Load((uint*)(p2 + 2)), Vector128.Load((uint*)(p6 + 2)));
        Vector256<uint> e = Vector256.Create(Vector128.Load((uint*)(p3 + 2)), Vector128.Load((uint*)(p7 + 2)));
        Vector256<ulong> t0 = Avx2.UnpackLow(a, b).AsUInt64(), t1 = Avx2.UnpackHigh(a, b).AsUInt64();
        Vector256<ulong> t2 = Avx2.UnpackLow(c, e).AsUInt64(), t3 = Avx2.UnpackHigh(c, e).AsUInt64();
        Vector256<short> s = Column(Avx2.UnpackLow(t0, t2).AsByte(), y, mask)
                           + Column(Avx2.UnpackHigh(t0, t2).AsByte(), y + 4, mask)
                           + Column(Avx2.UnpackLow(t1, t3).AsByte(), y + 8, mask)
                           + Column(Avx2.UnpackHigh(t1, t3).AsByte(), y + 12, mask);
        return Avx2.MultiplyAddAdjacent(s, ones);
    }

    /// <summary>Dword j of eight rows against activation values j·4.. (low nibbles) and 16 + j·4.. (high nibbles).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector256<short> Column(Vector256<byte> q, byte* y, Vector256<byte> mask) =>
        Avx2.MultiplyAddAdjacent(q & mask, Vector256.Create(*(int*)y).AsSByte())
        + Avx2.MultiplyAddAdjacent((q.AsUInt16() >>> 4).AsByte() & mask, Vector256.Create(*(int*)(y + 16)).AsSByte());

    // ---- SIMD paths: callers have checked the lengths. ----

    /// <summary>The 16 packed bytes of a block as signed values: element j in byte j (j &lt; 32), low nibbles first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe (Vector128<sbyte> Low, Vector128<sbyte> High) Unpack(byte* qs)
    {
        Vector128<byte> q = Vector128.Load(qs);
        Vector128<byte> mask = Vector128.Create((byte)0x0F);
        Vector128<sbyte> eight = Vector128.Create((sbyte)8);
        return ((q & mask).AsSByte() - eight, ((q >>> 4) & mask).AsSByte() - eight);
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
                (Vector128<sbyte> lo, Vector128<sbyte> hi) = Unpack(s + 2);
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
                (Vector128<sbyte> lo, Vector128<sbyte> hi) = Unpack(s + 2);
                (d * Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(lo))).Store(o);
                (d * Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(hi))).Store(o + 16);
            }
        }
    }

    internal static unsafe void QuantizeAvx2(ReadOnlySpan<float> src, Span<byte> dst)
    {
        int blocks = src.Length / BlockSize;
        fixed (float* x0 = src)
        fixed (byte* o0 = dst)
        {
            float* x = x0;
            byte* o = o0;
            for (int b = 0; b < blocks; b++, x += BlockSize, o += BlockBytes)
            {
                Vector256<float> v0 = Vector256.Load(x), v1 = Vector256.Load(x + 8);
                Vector256<float> v2 = Vector256.Load(x + 16), v3 = Vector256.Load(x + 24);
                Vector256<float> a0 = Vector256.Abs(v0), a1 = Vector256.Abs(v1), a2 = Vector256.Abs(v2), a3 = Vector256.Abs(v3);
                float amax = Q8_0.HorizontalMax(Vector256.MaxNative(Vector256.MaxNative(a0, a1), Vector256.MaxNative(a2, a3)));
                float max = 0f; // ggml keeps +0 when nothing beats amax = 0
                if (amax > 0f)
                {
                    // the scalar loop keeps the first element reaching the largest magnitude
                    Vector256<float> va = Vector256.Create(amax);
                    uint hits = Vector256.Equals(a0, va).ExtractMostSignificantBits()
                                | (Vector256.Equals(a1, va).ExtractMostSignificantBits() << 8)
                                | (Vector256.Equals(a2, va).ExtractMostSignificantBits() << 16)
                                | (Vector256.Equals(a3, va).ExtractMostSignificantBits() << 24);
                    max = x[BitOperations.TrailingZeroCount(hits)];
                }
                float d = max / -8f;
                float id = d != 0f ? 1.0f / d : 0f;
                Unsafe.WriteUnaligned(o, HalfBits.FromSingle(d));
                Vector256<float> vid = Vector256.Create(id), bias = Vector256.Create(8.5f);
                Vector256<int> fifteen = Vector256.Create(15);
                // multiply and add stay separate roundings, as in the C reference
                Vector256<int> q0 = Vector256.Min(Avx.ConvertToVector256Int32WithTruncation(v0 * vid + bias), fifteen);
                Vector256<int> q1 = Vector256.Min(Avx.ConvertToVector256Int32WithTruncation(v1 * vid + bias), fifteen);
                Vector256<int> q2 = Vector256.Min(Avx.ConvertToVector256Int32WithTruncation(v2 * vid + bias), fifteen);
                Vector256<int> q3 = Vector256.Min(Avx.ConvertToVector256Int32WithTruncation(v3 * vid + bias), fifteen);
                Vector256<short> bytes = Vector256.Narrow(q0 | (q2 << 4), q1 | (q3 << 4));
                Vector128.Narrow(bytes.GetLower().AsUInt16(), bytes.GetUpper().AsUInt16()).Store(o + 2);
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
                (Vector128<sbyte> lo, Vector128<sbyte> hi) = Unpack(s + 2);
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
                (Vector128<sbyte> lo, Vector128<sbyte> hi) = Unpack(s + 2);
                Vector512<float> sum = Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(lo)) * Vector512.Load(xp);
                sum = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(hi)), Vector512.Load(xp + 16), sum);
                acc = Avx512F.FusedMultiplyAdd(sum, Vector512.Create(HalfBits.Lookup(s)), acc);
            }
        }
        return Vector512.Sum(acc);
    }

    /// <remarks>
    /// The order is that of llama.cpp's CPU backend, which repacks Q4_0 weights eight rows at a time for AVX2
    /// (ggml_gemv/gemm_q4_0_8x8_q8_0): per block the exact integer dot, converted to float, is added into a
    /// scalar accumulator by one FMA with d_w·d_x. Any other order moves results by an ulp, enough to flip the
    /// next product's activation rounding now and then (measured: 1.6e-2 in log-probability on tiny256).
    /// </remarks>
    internal static unsafe float DotQ8Avx2(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = w.Length / BlockBytes;
        float acc = 0f;
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq8)
        {
            byte* pw = w0, px = x0;
            int b = 0;
            // Eight blocks' integer dots are reduced together (one transpose-add tree instead of eight horizontal
            // sums) and their scales multiplied as one vector; only the FMA chain itself stays serial, in block order.
            for (; b + 8 <= blocks; b += 8, pw += 8 * BlockBytes, px += 8 * Q8_0.BlockBytes)
            {
                Vector256<int> h0 = Avx2.HorizontalAdd(
                    Avx2.HorizontalAdd(BlockDotQ8(pw, px), BlockDotQ8(pw + BlockBytes, px + Q8_0.BlockBytes)),
                    Avx2.HorizontalAdd(BlockDotQ8(pw + 2 * BlockBytes, px + 2 * Q8_0.BlockBytes), BlockDotQ8(pw + 3 * BlockBytes, px + 3 * Q8_0.BlockBytes)));
                Vector256<int> h1 = Avx2.HorizontalAdd(
                    Avx2.HorizontalAdd(BlockDotQ8(pw + 4 * BlockBytes, px + 4 * Q8_0.BlockBytes), BlockDotQ8(pw + 5 * BlockBytes, px + 5 * Q8_0.BlockBytes)),
                    Avx2.HorizontalAdd(BlockDotQ8(pw + 6 * BlockBytes, px + 6 * Q8_0.BlockBytes), BlockDotQ8(pw + 7 * BlockBytes, px + 7 * Q8_0.BlockBytes)));
                // h0 = [b0..b3 first halves | b0..b3 second halves], h1 likewise for b4..b7
                Vector256<int> sums = Avx2.Permute2x128(h0, h1, 0x20) + Avx2.Permute2x128(h0, h1, 0x31);
                Vector256<float> dots = Avx.ConvertToVector256Single(sums);
                Vector256<float> scales = Vector256.Create(
                    HalfBits.Lookup(pw), HalfBits.Lookup(pw + BlockBytes), HalfBits.Lookup(pw + 2 * BlockBytes), HalfBits.Lookup(pw + 3 * BlockBytes),
                    HalfBits.Lookup(pw + 4 * BlockBytes), HalfBits.Lookup(pw + 5 * BlockBytes), HalfBits.Lookup(pw + 6 * BlockBytes), HalfBits.Lookup(pw + 7 * BlockBytes))
                    * Vector256.Create(
                    HalfBits.Lookup(px), HalfBits.Lookup(px + Q8_0.BlockBytes), HalfBits.Lookup(px + 2 * Q8_0.BlockBytes), HalfBits.Lookup(px + 3 * Q8_0.BlockBytes),
                    HalfBits.Lookup(px + 4 * Q8_0.BlockBytes), HalfBits.Lookup(px + 5 * Q8_0.BlockBytes), HalfBits.Lookup(px + 6 * Q8_0.BlockBytes), HalfBits.Lookup(px + 7 * Q8_0.BlockBytes));
                acc = MathF.FusedMultiplyAdd(dots.GetElement(0), scales.GetElement(0), acc);
                acc = MathF.FusedMultiplyAdd(dots.GetElement(1), scales.GetElement(1), acc);
                acc = MathF.FusedMultiplyAdd(dots.GetElement(2), scales.GetElement(2), acc);
                acc = MathF.FusedMultiplyAdd(dots.GetElement(3), scales.GetElement(3), acc);
                acc = MathF.FusedMultiplyAdd(dots.GetElement(4), scales.GetElement(4), acc);
                acc = MathF.FusedMultiplyAdd(dots.GetElement(5), scales.GetElement(5), acc);
                acc = MathF.FusedMultiplyAdd(dots.GetElement(6), scales.GetElement(6), acc);
                acc = MathF.FusedMultiplyAdd(dots.GetElement(7), scales.GetElement(7), acc);
            }
            for (; b < blocks; b++, pw += BlockBytes, px += Q8_0.BlockBytes)
                acc = MathF.FusedMultiplyAdd(Vector256.Sum(BlockDotQ8(pw, px)), HalfBits.Lookup(pw) * HalfBits.Lookup(px), acc);
        }
        return acc;
    }

    // maddubs multiplies unsigned by signed bytes: the raw nibbles (0..15) times the activations, minus 8 times
    // the activations, is the signed dot. Pair sums stay within ±3840 and ±2048, so nothing saturates and the
    // result is exact for every activation byte, -128 included. Returns the block's integer dot in 8 int lanes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> BlockDotQ8(byte* pw, byte* px)
    {
        Vector128<byte> q = Vector128.Load(pw + 2);
        Vector128<byte> mask = Vector128.Create((byte)0x0F);
        Vector256<byte> nibbles = Vector256.Create(q & mask, (q >>> 4) & mask);
        Vector256<sbyte> y = Vector256.Load((sbyte*)(px + 2));
        Vector256<short> pairs = Avx2.MultiplyAddAdjacent(nibbles, y) - Avx2.MultiplyAddAdjacent(Vector256.Create((byte)8), y);
        return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
    }

    internal static unsafe float DotQ8Avx512(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq8)
    {
        int blocks = w.Length / BlockBytes;
        Vector512<float> acc = Vector512<float>.Zero;
        Vector128<byte> mask = Vector128.Create((byte)0x0F);
        Vector512<short> eight = Vector512.Create((short)8);
        fixed (byte* w0 = w)
        fixed (byte* x0 = xq8)
        {
            byte* pw = w0, px = x0;
            for (int b = 0; b < blocks; b++, pw += BlockBytes, px += Q8_0.BlockBytes)
            {
                Vector128<byte> q = Vector128.Load(pw + 2);
                Vector512<short> wv = Avx512BW.ConvertToVector512Int16(Vector256.Create(q & mask, (q >>> 4) & mask)).AsInt16() - eight;
                Vector512<short> xv = Avx512BW.ConvertToVector512Int16(Vector256.Load((sbyte*)(px + 2)));
                float d = HalfBits.Lookup(pw) * HalfBits.Lookup(px);
                acc = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(wv, xv)), Vector512.Create(d), acc);
            }
        }
        return Vector512.Sum(acc);
    }
}
