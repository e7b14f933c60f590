using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// Q8_0 weights interleaved four rows at a time: for each block column b of a group of four rows, one 136-byte
/// record holds block b of rows 0, 1, 2 and 3, each still a whole ggml block (scale, then 32 quants). A group fills
/// the bytes of its four plain rows, so the rearrangement is done in place, and the four-row decode kernel then
/// reads one contiguous stream instead of four (which the hardware prefetchers follow poorly). The kernels are
/// <see cref="Q8_0"/>'s four-row and 2 × 4 steps with the rows 34 bytes apart: every result is bit-identical to
/// <see cref="Q8_0.DotQ8"/> of the plain row.
/// </summary>
public static class Q8_0x4
{
    public const int Rows = 4;

    /// <summary>Bytes of one interleaved block column: block b of each of the four rows.</summary>
    public const int RecordBytes = Rows * Q8_0.BlockBytes;

    /// <summary>Four plain rows of <paramref name="rowBytes"/> (one after another in <paramref name="rows"/>) to one interleaved group.</summary>
    public static void Interleave(ReadOnlySpan<byte> rows, int rowBytes, Span<byte> group)
    {
        int blocks = CheckGroup(rowBytes, rows.Length, group.Length);
        for (int b = 0; b < blocks; b++)
        {
            for (int r = 0; r < Rows; r++)
                rows.Slice(r * rowBytes + b * Q8_0.BlockBytes, Q8_0.BlockBytes).CopyTo(group.Slice(b * RecordBytes + r * Q8_0.BlockBytes));
        }
    }

    /// <summary>Row <paramref name="row"/> (0..3) of an interleaved group, back in ggml's plain Q8_0 layout.</summary>
    public static void ExtractRow(ReadOnlySpan<byte> group, int rowBytes, int row, Span<byte> dst)
    {
        int blocks = CheckGroup(rowBytes, 4L * rowBytes, group.Length);
        if (dst.Length < rowBytes)
            throw new ArgumentException($"a row of {rowBytes} bytes is needed; got {dst.Length}", nameof(dst));
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, Rows);
        for (int b = 0; b < blocks; b++)
            group.Slice(b * RecordBytes + row * Q8_0.BlockBytes, Q8_0.BlockBytes).CopyTo(dst.Slice(b * Q8_0.BlockBytes));
    }

    /// <summary>
    /// An interleaved group · one activation row quantized by <see cref="Q8_0.QuantizeActivations"/> (bytes in
    /// [−127, 127]): results[r] is bit-identical to <see cref="Q8_0.DotQ8"/> of plain row r.
    /// </summary>
    public static void DotQ8(ReadOnlySpan<byte> group, ReadOnlySpan<byte> xq, Span<float> results)
    {
        int blocks = CheckDot(group.Length, xq.Length, 1, xq.Length, results.Length, Rows);
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = group)
                fixed (byte* px = xq)
                fixed (float* pr = results)
                    DotQ8Avx2(pw, px, blocks, pr);
            }
            return;
        }
        DotQ8Scalar(group, xq, results);
    }

    /// <summary>Reference for <see cref="DotQ8"/>: each row extracted and dotted by <see cref="Q8_0.DotQ8Scalar"/>.</summary>
    public static void DotQ8Scalar(ReadOnlySpan<byte> group, ReadOnlySpan<byte> xq, Span<float> results)
    {
        int blocks = CheckDot(group.Length, xq.Length, 1, xq.Length, results.Length, Rows);
        int rowBytes = blocks * Q8_0.BlockBytes;
        Span<byte> row = rowBytes <= 4096 ? stackalloc byte[rowBytes] : new byte[rowBytes];
        for (int r = 0; r < Rows; r++)
        {
            ExtractRow(group, rowBytes, r, row);
            results[r] = Q8_0.DotQ8Scalar(row, xq[..rowBytes]);
        }
    }

    /// <summary>
    /// Rows 2·<paramref name="pair"/> and 2·<paramref name="pair"/> + 1 of an interleaved group · four activation
    /// rows (<paramref name="activationStride"/> bytes apart): results[t·2 + i] is bit-identical to
    /// <see cref="Q8_0.DotQ8"/> of plain row 2·pair + i and activation t (as <see cref="Q8_0.DotQ8Tile2x4"/>).
    /// </summary>
    public static void DotQ8Tile2x4(ReadOnlySpan<byte> group, int pair, ReadOnlySpan<byte> xq, int activationStride, Span<float> results)
    {
        int blocks = CheckDot(group.Length, xq.Length, 4, activationStride, results.Length, 8);
        if ((uint)pair > 1)
            throw new ArgumentOutOfRangeException(nameof(pair), pair, "a group of four rows has pairs 0 and 1");
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = group)
                fixed (byte* px = xq)
                fixed (float* pr = results)
                    DotQ8Tile2x4Avx2(pw + 2 * pair * Q8_0.BlockBytes, px, activationStride, blocks, pr);
            }
            return;
        }
        DotQ8Tile2x4Scalar(group, pair, xq, activationStride, results);
    }

    public static void DotQ8Tile2x4Scalar(ReadOnlySpan<byte> group, int pair, ReadOnlySpan<byte> xq, int activationStride, Span<float> results)
    {
        int blocks = CheckDot(group.Length, xq.Length, 4, activationStride, results.Length, 8);
        if ((uint)pair > 1)
            throw new ArgumentOutOfRangeException(nameof(pair), pair, "a group of four rows has pairs 0 and 1");
        int rowBytes = blocks * Q8_0.BlockBytes;
        var row = new byte[rowBytes];
        for (int i = 0; i < 2; i++)
        {
            ExtractRow(group, rowBytes, 2 * pair + i, row);
            for (int t = 0; t < 4; t++)
                results[t * 2 + i] = Q8_0.DotQ8Scalar(row, xq.Slice(t * activationStride, rowBytes));
        }
    }

    internal static unsafe void DotQ8Avx2(byte* w, byte* xq, int blocks, float* results)
    {
        Vector256<float> a0 = Vector256<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        Vector256<short> ones = Vector256.Create((short)1);
        byte* px = xq;
        // The group is one stream, but the measured four-row kernel still gained from fetching the next group ahead
        // (at four bytes per activation byte consumed), so this one does the same.
        byte* ahead = w + (nint)blocks * RecordBytes;
        for (int b = 0; b < blocks; b++, w += RecordBytes, ahead += RecordBytes, px += Q8_0.BlockBytes)
        {
            Sse.Prefetch0(ahead);
            Sse.Prefetch0(ahead + 64);
            Sse.Prefetch0(ahead + 128);
            Vector256<sbyte> y = Vector256.Load((sbyte*)(px + 2));
            float dx = HalfBits.Lookup(px);
            a0 = Q8_0.RowStep(w, y, dx, ones, a0);
            a1 = Q8_0.RowStep(w + Q8_0.BlockBytes, y, dx, ones, a1);
            a2 = Q8_0.RowStep(w + 2 * Q8_0.BlockBytes, y, dx, ones, a2);
            a3 = Q8_0.RowStep(w + 3 * Q8_0.BlockBytes, y, dx, ones, a3);
        }
        results[0] = F32.SumLanesHalving(a0);
        results[1] = F32.SumLanesHalving(a1);
        results[2] = F32.SumLanesHalving(a2);
        results[3] = F32.SumLanesHalving(a3);
    }

    /// <summary><see cref="Q8_0.DotQ8Tile2x4"/>'s loop for two rows whose blocks sit <see cref="RecordBytes"/> apart, row 1's right after row 0's.</summary>
    internal static unsafe void DotQ8Tile2x4Avx2(byte* w, byte* xq, int stride, int blocks, float* results)
    {
        Vector256<float> a00 = Vector256<float>.Zero, a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        Vector256<short> ones = Vector256.Create((short)1);
        byte* px = xq;
        for (int b = 0; b < blocks; b++, w += RecordBytes, px += Q8_0.BlockBytes)
        {
            byte* p0 = w, p1 = w + Q8_0.BlockBytes;
            Vector256<sbyte> q0 = Vector256.Load((sbyte*)(p0 + 2)), q1 = Vector256.Load((sbyte*)(p1 + 2));
            Vector256<byte> m0 = Avx2.Abs(q0), m1 = Avx2.Abs(q1);
            float d0 = HalfBits.Lookup(p0), d1 = HalfBits.Lookup(p1);
            Q8_0.Step(px, q0, q1, m0, m1, d0, d1, ones, ref a00, ref a01);
            Q8_0.Step(px + stride, q0, q1, m0, m1, d0, d1, ones, ref a10, ref a11);
            Q8_0.Step(px + 2 * stride, q0, q1, m0, m1, d0, d1, ones, ref a20, ref a21);
            Q8_0.Step(px + 3 * stride, q0, q1, m0, m1, d0, d1, ones, ref a30, ref a31);
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

    private static int CheckGroup(int rowBytes, long plainBytes, int groupBytes)
    {
        if (rowBytes <= 0 || rowBytes % Q8_0.BlockBytes != 0)
            throw new ArgumentException($"rows must be whole {Q8_0.BlockBytes}-byte Q8_0 blocks; got {rowBytes} bytes", nameof(rowBytes));
        if (plainBytes < 4L * rowBytes || groupBytes < 4L * rowBytes)
            throw new ArgumentException($"four rows of {rowBytes} bytes are needed on both sides", nameof(rowBytes));
        return rowBytes / Q8_0.BlockBytes;
    }

    private static int CheckDot(int groupBytes, int xBytes, int tokens, int activationStride, int resultCount, int results)
    {
        if (groupBytes <= 0 || groupBytes % RecordBytes != 0)
            throw new ArgumentException($"an interleaved group is whole {RecordBytes}-byte records; got {groupBytes} bytes", "group");
        int blocks = groupBytes / RecordBytes;
        int activationBytes = blocks * Q8_0.BlockBytes;
        if (activationStride < activationBytes || xBytes < (long)(tokens - 1) * activationStride + activationBytes)
            throw new ArgumentException($"{tokens} Q8_0 activation row(s) of {activationBytes} bytes, {activationStride} apart, are needed; got {xBytes} bytes", "xq");
        if (resultCount < results)
            throw new ArgumentException($"{results} results are needed; got {resultCount}", nameof(results));
        return blocks;
    }
}
