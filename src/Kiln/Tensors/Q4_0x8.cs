using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// Q4_0 weights interleaved eight rows at a time, as llama.cpp's CPU backend repacks them at load
/// (block_q4_0x8): for each block column b of a group of eight rows, one 144-byte record holds the eight rows'
/// scales (8 × f16, row order) and then their quants as four 32-byte vectors, vector j being dword j (quants
/// 4j..4j+3 and 16+4j..16+4j+3) of rows 0..7. That is exactly the register layout the eight-row kernels of
/// <see cref="Q4_0"/> build by transposing; stored so, a group is one contiguous stream and a block costs four
/// loads instead of eight loads, eight shuffles and eight scale inserts. A group fills the same
/// 8 × rowBytes bytes as the eight plain rows, so the rearrangement is done in place. Every result is
/// bit-identical to <see cref="Q4_0.DotQ8"/> of the plain row: the same integer sums, the same FMA per block.
/// </summary>
public static class Q4_0x8
{
    public const int Rows = 8;

    /// <summary>Bytes of one interleaved block column: eight scales and eight rows' 16 quant bytes.</summary>
    public const int RecordBytes = Rows * Q4_0.BlockBytes;

    private const int ScaleBytes = Rows * 2;

    /// <summary>Eight plain rows of <paramref name="rowBytes"/> (one after another in <paramref name="rows"/>) to one interleaved group.</summary>
    public static void Interleave(ReadOnlySpan<byte> rows, int rowBytes, Span<byte> group)
    {
        int blocks = CheckGroup(rowBytes, rows.Length, group.Length);
        for (int b = 0; b < blocks; b++)
        {
            Span<byte> record = group.Slice(b * RecordBytes, RecordBytes);
            for (int r = 0; r < Rows; r++)
            {
                ReadOnlySpan<byte> block = rows.Slice(r * rowBytes + b * Q4_0.BlockBytes, Q4_0.BlockBytes);
                block[..2].CopyTo(record.Slice(2 * r, 2));
                for (int j = 0; j < 4; j++)
                    block.Slice(2 + 4 * j, 4).CopyTo(record.Slice(ScaleBytes + 32 * j + 4 * r, 4));
            }
        }
    }

    /// <summary>Row <paramref name="row"/> (0..7) of an interleaved group, back in ggml's plain Q4_0 layout.</summary>
    public static void ExtractRow(ReadOnlySpan<byte> group, int rowBytes, int row, Span<byte> dst)
    {
        int blocks = CheckGroup(rowBytes, 8L * rowBytes, group.Length);
        if (dst.Length < rowBytes)
            throw new ArgumentException($"a row of {rowBytes} bytes is needed; got {dst.Length}", nameof(dst));
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, Rows);
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> record = group.Slice(b * RecordBytes, RecordBytes);
            Span<byte> block = dst.Slice(b * Q4_0.BlockBytes, Q4_0.BlockBytes);
            record.Slice(2 * row, 2).CopyTo(block);
            for (int j = 0; j < 4; j++)
                record.Slice(ScaleBytes + 32 * j + 4 * row, 4).CopyTo(block.Slice(2 + 4 * j, 4));
        }
    }

    /// <summary>
    /// An interleaved group · one Q8_0 activation row: results[r] is bit-identical to <see cref="Q4_0.DotQ8"/> of
    /// plain row r. <paramref name="offsets"/> comes from <see cref="Q4_0.ActivationOffsets"/>.
    /// </summary>
    public static void DotQ8(ReadOnlySpan<byte> group, ReadOnlySpan<byte> xq8, ReadOnlySpan<int> offsets, Span<float> results)
    {
        int blocks = CheckDot(group.Length, xq8.Length, 1, xq8.Length, offsets.Length, 1, 0, results.Length, Rows, offsetsNeeded: true);
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = group)
                fixed (byte* px = xq8)
                fixed (int* po = offsets)
                fixed (float* pr = results)
                    DotQ8Avx2(pw, px, po, blocks, pr);
            }
            return;
        }
        DotQ8Scalar(group, xq8, offsets, results);
    }

    /// <summary>Reference for <see cref="DotQ8"/>: each row extracted and dotted by <see cref="Q4_0.DotQ8Scalar"/> (offsets are not needed).</summary>
    public static void DotQ8Scalar(ReadOnlySpan<byte> group, ReadOnlySpan<byte> xq8, ReadOnlySpan<int> offsets, Span<float> results)
    {
        int blocks = CheckDot(group.Length, xq8.Length, 1, xq8.Length, offsets.Length, 1, 0, results.Length, Rows, offsetsNeeded: false);
        int rowBytes = blocks * Q4_0.BlockBytes;
        Span<byte> row = rowBytes <= 4096 ? stackalloc byte[rowBytes] : new byte[rowBytes];
        for (int r = 0; r < Rows; r++)
        {
            ExtractRow(group, rowBytes, r, row);
            results[r] = Q4_0.DotQ8Scalar(row, xq8[..(blocks * Q8_0.BlockBytes)]);
        }
    }

    /// <summary>
    /// An interleaved group · four Q8_0 activation rows (<paramref name="activationStride"/> bytes apart, their
    /// offsets <paramref name="offsetStride"/> ints apart): results[t·8 + r] is bit-identical to
    /// <see cref="Q4_0.DotQ8"/> of plain row r and activation t.
    /// </summary>
    public static void DotQ8Tile4(ReadOnlySpan<byte> group, ReadOnlySpan<byte> xq8, int activationStride,
        ReadOnlySpan<int> offsets, int offsetStride, Span<float> results)
    {
        int blocks = CheckDot(group.Length, xq8.Length, 4, activationStride, offsets.Length, 4, offsetStride, results.Length, 4 * Rows, offsetsNeeded: true);
        if (CpuPaths.CanAvx2)
        {
            unsafe
            {
                fixed (byte* pw = group)
                fixed (byte* px = xq8)
                fixed (int* po = offsets)
                fixed (float* pr = results)
                    DotQ8Tile4Avx2(pw, px, activationStride, po, offsetStride, blocks, pr);
            }
            return;
        }
        DotQ8Tile4Scalar(group, xq8, activationStride, offsets, offsetStride, results);
    }

    public static void DotQ8Tile4Scalar(ReadOnlySpan<byte> group, ReadOnlySpan<byte> xq8, int activationStride,
        ReadOnlySpan<int> offsets, int offsetStride, Span<float> results)
    {
        int blocks = CheckDot(group.Length, xq8.Length, 4, activationStride, offsets.Length, 4, offsetStride, results.Length, 4 * Rows, offsetsNeeded: false);
        int activationBytes = blocks * Q8_0.BlockBytes;
        for (int t = 0; t < 4; t++)
            DotQ8Scalar(group, xq8.Slice(t * activationStride, activationBytes), [], results.Slice(t * Rows, Rows));
    }

    /// <summary>
    /// Two adjacent interleaved groups (16 rows: <paramref name="groups"/> holds group g and then group g + 1) ·
    /// <paramref name="tokens"/> (1 to 8) Q8_0 activation rows: results[t·16 + i] is bit-identical to
    /// <see cref="Q4_0.DotQ8"/> of plain row i (rows 8..15 being the second group's) and activation t.
    /// With AVX-512 a zmm register carries both groups, so each broadcast activation dword, each maddubs and each FMA
    /// serves sixteen rows: half the instructions of two eight-row passes, which is what bounds these kernels on
    /// 2-core Zen 4 (the 512-bit ops cost the same execution-unit time as two 256-bit ones, so the gain is the
    /// front end's). Same integer sums and the same FMA per block and row as the one-row kernel.
    /// </summary>
    public static void DotQ8Pair(ReadOnlySpan<byte> groups, ReadOnlySpan<byte> xq8, int activationStride,
        ReadOnlySpan<int> offsets, int offsetStride, int tokens, Span<float> results)
    {
        if (tokens is < 1 or > 8)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "1 to 8 tokens");
        if (groups.Length % 2 != 0)
            throw new ArgumentException($"two groups of equal size are needed; got {groups.Length} bytes", nameof(groups));
        int groupBytes = groups.Length / 2;
        int blocks = CheckDot(groupBytes, xq8.Length, tokens, activationStride, offsets.Length, tokens, offsetStride, results.Length, tokens * 2 * Rows, offsetsNeeded: true);
        if (CpuPaths.CanAvx512)
        {
            unsafe
            {
                fixed (byte* pw = groups)
                fixed (byte* px = xq8)
                fixed (int* po = offsets)
                fixed (float* pr = results)
                    DotQ8PairAvx512(pw, groupBytes, px, activationStride, po, offsetStride, blocks, tokens, pr, 2 * Rows);
            }
            return;
        }
        DotQ8PairScalar(groups, xq8, activationStride, offsets, offsetStride, tokens, results);
    }

    /// <summary>Reference for <see cref="DotQ8Pair"/>: each group and token through <see cref="DotQ8Scalar"/> (offsets are not needed).</summary>
    public static void DotQ8PairScalar(ReadOnlySpan<byte> groups, ReadOnlySpan<byte> xq8, int activationStride,
        ReadOnlySpan<int> offsets, int offsetStride, int tokens, Span<float> results)
    {
        int groupBytes = groups.Length / 2;
        int blocks = CheckDot(groupBytes, xq8.Length, tokens, activationStride, offsets.Length, tokens, offsetStride, results.Length, tokens * 2 * Rows, offsetsNeeded: false);
        int activationBytes = blocks * Q8_0.BlockBytes;
        for (int t = 0; t < tokens; t++)
        {
            for (int g = 0; g < 2; g++)
                DotQ8Scalar(groups.Slice(g * groupBytes, groupBytes), xq8.Slice(t * activationStride, activationBytes), [],
                    results.Slice((2 * t + g) * Rows, Rows));
        }
    }

    /// <summary>
    /// <see cref="DotQ8Pair"/>'s AVX-512 tile for 1 to 8 tokens (unchecked), token t's sixteen results at
    /// results + t · resultStride: MatMul passes its output row stride and so needs no scratch tile and no copies.
    /// </summary>
    internal static unsafe void DotQ8PairAvx512(byte* w, int groupBytes, byte* xq8, int stride, int* offsets, int offsetStride,
        int blocks, int tokens, float* results, int resultStride)
    {
        switch (tokens)
        {
            case 8: DotQ8PairAvx512<Eight>(w, groupBytes, xq8, stride, offsets, offsetStride, blocks, results, resultStride); break;
            case 7: DotQ8PairAvx512<Seven>(w, groupBytes, xq8, stride, offsets, offsetStride, blocks, results, resultStride); break;
            case 6: DotQ8PairAvx512<Six>(w, groupBytes, xq8, stride, offsets, offsetStride, blocks, results, resultStride); break;
            case 5: DotQ8PairAvx512<Five>(w, groupBytes, xq8, stride, offsets, offsetStride, blocks, results, resultStride); break;
            case 4: DotQ8PairAvx512<Four>(w, groupBytes, xq8, stride, offsets, offsetStride, blocks, results, resultStride); break;
            case 3: DotQ8PairAvx512<Three>(w, groupBytes, xq8, stride, offsets, offsetStride, blocks, results, resultStride); break;
            case 2: DotQ8PairAvx512<Two>(w, groupBytes, xq8, stride, offsets, offsetStride, blocks, results, resultStride); break;
            default: DotQ8PairAvx512<One>(w, groupBytes, xq8, stride, offsets, offsetStride, blocks, results, resultStride); break;
        }
    }

    // Token counts as types: each instantiation of DotQ8PairAvx512 is compiled for its count, so the unused
    // accumulators and steps vanish and one body serves the tiles of every token count from 1 to 8.
    internal interface ITokenCount { static abstract int Count { get; } }
    internal struct One : ITokenCount { public static int Count => 1; }
    internal struct Two : ITokenCount { public static int Count => 2; }
    internal struct Three : ITokenCount { public static int Count => 3; }
    internal struct Four : ITokenCount { public static int Count => 4; }
    internal struct Five : ITokenCount { public static int Count => 5; }
    internal struct Six : ITokenCount { public static int Count => 6; }
    internal struct Seven : ITokenCount { public static int Count => 7; }
    internal struct Eight : ITokenCount { public static int Count => 8; }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void DotQ8PairAvx512<T>(byte* w, int groupBytes, byte* xq8, int stride, int* offsets, int offsetStride, int blocks,
        float* results, int resultStride)
        where T : struct, ITokenCount
    {
        Vector512<float> acc0 = Vector512<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector512<float> acc4 = acc0, acc5 = acc0, acc6 = acc0, acc7 = acc0;
        Vector512<byte> mask = Vector512.Create((byte)0x0F);
        Vector512<short> ones = Vector512.Create((short)1);
        float* table = HalfBits.TablePointer;
        byte* w1 = w + groupBytes;
        // The next pair of groups (MatMul's next 16 rows) is fetched in lockstep with this one: a group is a short
        // stream that the hardware prefetcher picks up late. Measured from DRAM (huge pages, 8 tokens, one thread):
        // 3.05 → 2.56 ns per (token, 8-row block); a shorter distance (one group ahead) gained half of that.
        nint ahead = 2 * (nint)groupBytes;
        byte* px = xq8;
        for (int b = 0; b < blocks; b++, w += RecordBytes, w1 += RecordBytes, px += Q8_0.BlockBytes, offsets++)
        {
            Sse.Prefetch0(w + ahead);
            Sse.Prefetch0(w + ahead + 64);
            Sse.Prefetch0(w + ahead + 128);
            Sse.Prefetch0(w1 + ahead);
            Sse.Prefetch0(w1 + ahead + 64);
            Sse.Prefetch0(w1 + ahead + 128);
            Vector512<byte> q0 = Vector512.Create(Vector256.Load(w + ScaleBytes), Vector256.Load(w1 + ScaleBytes));
            Vector512<byte> q1 = Vector512.Create(Vector256.Load(w + ScaleBytes + 32), Vector256.Load(w1 + ScaleBytes + 32));
            Vector512<byte> q2 = Vector512.Create(Vector256.Load(w + ScaleBytes + 64), Vector256.Load(w1 + ScaleBytes + 64));
            Vector512<byte> q3 = Vector512.Create(Vector256.Load(w + ScaleBytes + 96), Vector256.Load(w1 + ScaleBytes + 96));
            Vector512<byte> l0 = q0 & mask, l1 = q1 & mask, l2 = q2 & mask, l3 = q3 & mask;
            Vector512<byte> h0 = (q0.AsUInt16() >>> 4).AsByte() & mask, h1 = (q1.AsUInt16() >>> 4).AsByte() & mask;
            Vector512<byte> h2 = (q2.AsUInt16() >>> 4).AsByte() & mask, h3 = (q3.AsUInt16() >>> 4).AsByte() & mask;
            // .NET has no 512-bit gather: the two groups' eight scales each, looked up in the half table.
            Vector512<float> rowScales = Vector512.Create(
                Avx2.GatherVector256(table, Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)w)), 4),
                Avx2.GatherVector256(table, Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)w1)), 4));
            acc0 = PairStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px, offsets, ones, table, acc0);
            if (T.Count >= 2)
                acc1 = PairStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + stride, offsets + offsetStride, ones, table, acc1);
            if (T.Count >= 3)
                acc2 = PairStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 2 * stride, offsets + 2 * offsetStride, ones, table, acc2);
            if (T.Count >= 4)
                acc3 = PairStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 3 * stride, offsets + 3 * offsetStride, ones, table, acc3);
            if (T.Count >= 5)
                acc4 = PairStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 4 * stride, offsets + 4 * offsetStride, ones, table, acc4);
            if (T.Count >= 6)
                acc5 = PairStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 5 * stride, offsets + 5 * offsetStride, ones, table, acc5);
            if (T.Count >= 7)
                acc6 = PairStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 6 * stride, offsets + 6 * offsetStride, ones, table, acc6);
            if (T.Count == 8)
                acc7 = PairStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 7 * stride, offsets + 7 * offsetStride, ones, table, acc7);
        }
        acc0.Store(results);
        if (T.Count >= 2)
            acc1.Store(results + resultStride);
        if (T.Count >= 3)
            acc2.Store(results + 2 * resultStride);
        if (T.Count >= 4)
            acc3.Store(results + 3 * resultStride);
        if (T.Count >= 5)
            acc4.Store(results + 4 * resultStride);
        if (T.Count >= 6)
            acc5.Store(results + 5 * resultStride);
        if (T.Count >= 7)
            acc6.Store(results + 6 * resultStride);
        if (T.Count == 8)
            acc7.Store(results + 7 * resultStride);
    }

    /// <summary>
    /// One token's block against sixteen unpacked rows. The 16-bit pair sums are added as a tree (integer adds, so the
    /// order cannot change the result; no overflow, as <see cref="Q4_0"/>'s eight-row kernels explain), which keeps the
    /// dependency chain short.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> PairStep(Vector512<byte> l0, Vector512<byte> l1, Vector512<byte> l2, Vector512<byte> l3,
        Vector512<byte> h0, Vector512<byte> h1, Vector512<byte> h2, Vector512<byte> h3,
        Vector512<float> rowScales, byte* px, int* offset, Vector512<short> ones, float* table, Vector512<float> acc)
    {
        byte* y = px + 2;
        Vector512<short> s0 = Avx512BW.MultiplyAddAdjacent(l0, Vector512.Create(*(int*)y).AsSByte())
                            + Avx512BW.MultiplyAddAdjacent(h0, Vector512.Create(*(int*)(y + 16)).AsSByte());
        Vector512<short> s1 = Avx512BW.MultiplyAddAdjacent(l1, Vector512.Create(*(int*)(y + 4)).AsSByte())
                            + Avx512BW.MultiplyAddAdjacent(h1, Vector512.Create(*(int*)(y + 20)).AsSByte());
        Vector512<short> s2 = Avx512BW.MultiplyAddAdjacent(l2, Vector512.Create(*(int*)(y + 8)).AsSByte())
                            + Avx512BW.MultiplyAddAdjacent(h2, Vector512.Create(*(int*)(y + 24)).AsSByte());
        Vector512<short> s3 = Avx512BW.MultiplyAddAdjacent(l3, Vector512.Create(*(int*)(y + 12)).AsSByte())
                            + Avx512BW.MultiplyAddAdjacent(h3, Vector512.Create(*(int*)(y + 28)).AsSByte());
        Vector512<int> sumi = Avx512BW.MultiplyAddAdjacent((s0 + s1) + (s2 + s3), ones) - Vector512.Create(*offset);
        return Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sumi), rowScales * Vector512.Create(table[*(ushort*)px]), acc);
    }

    internal static unsafe void DotQ8Avx2(byte* w, byte* xq8, int* offsets, int blocks, float* results)
    {
        Vector256<float> acc = Vector256<float>.Zero;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        byte* px = xq8;
        for (int b = 0; b < blocks; b++, w += RecordBytes, px += Q8_0.BlockBytes, offsets++)
        {
            byte* y = px + 2;
            // The sums in Q4_0.RowSums8's order: dword columns 0..3, low then high nibbles within each.
            Vector256<short> s = Q4_0.Column(Vector256.Load(w + ScaleBytes), y, mask)
                               + Q4_0.Column(Vector256.Load(w + ScaleBytes + 32), y + 4, mask)
                               + Q4_0.Column(Vector256.Load(w + ScaleBytes + 64), y + 8, mask)
                               + Q4_0.Column(Vector256.Load(w + ScaleBytes + 96), y + 12, mask);
            Vector256<int> sumi = Avx2.MultiplyAddAdjacent(s, ones) - Vector256.Create(*offsets);
            Vector256<float> scales = HalfBits.ToSingle(Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)w)).AsUInt32())
                                      * Vector256.Create(HalfBits.Lookup(px));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), scales, acc);
        }
        acc.Store(results);
    }

    internal static unsafe void DotQ8Tile4Avx2(byte* w, byte* xq8, int stride, int* offsets, int offsetStride, int blocks, float* results)
    {
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<short> ones = Vector256.Create((short)1);
        byte* px = xq8;
        for (int b = 0; b < blocks; b++, w += RecordBytes, px += Q8_0.BlockBytes, offsets++)
        {
            Vector256<byte> q0 = Vector256.Load(w + ScaleBytes), q1 = Vector256.Load(w + ScaleBytes + 32);
            Vector256<byte> q2 = Vector256.Load(w + ScaleBytes + 64), q3 = Vector256.Load(w + ScaleBytes + 96);
            Vector256<byte> l0 = q0 & mask, l1 = q1 & mask, l2 = q2 & mask, l3 = q3 & mask;
            Vector256<byte> h0 = (q0.AsUInt16() >>> 4).AsByte() & mask, h1 = (q1.AsUInt16() >>> 4).AsByte() & mask;
            Vector256<byte> h2 = (q2.AsUInt16() >>> 4).AsByte() & mask, h3 = (q3.AsUInt16() >>> 4).AsByte() & mask;
            Vector256<float> rowScales = HalfBits.ToSingle(Avx2.ConvertToVector256Int32(Vector128.Load((ushort*)w)).AsUInt32());
            acc0 = Q4_0.TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px, offsets, ones, acc0);
            acc1 = Q4_0.TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + stride, offsets + offsetStride, ones, acc1);
            acc2 = Q4_0.TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 2 * stride, offsets + 2 * offsetStride, ones, acc2);
            acc3 = Q4_0.TokenStep(l0, l1, l2, l3, h0, h1, h2, h3, rowScales, px + 3 * stride, offsets + 3 * offsetStride, ones, acc3);
        }
        acc0.Store(results);
        acc1.Store(results + 8);
        acc2.Store(results + 16);
        acc3.Store(results + 24);
    }

    private static int CheckGroup(int rowBytes, long plainBytes, int groupBytes)
    {
        if (rowBytes <= 0 || rowBytes % Q4_0.BlockBytes != 0)
            throw new ArgumentException($"rows must be whole {Q4_0.BlockBytes}-byte Q4_0 blocks; got {rowBytes} bytes", nameof(rowBytes));
        if (plainBytes < 8L * rowBytes || groupBytes < 8L * rowBytes)
            throw new ArgumentException($"eight rows of {rowBytes} bytes are needed on both sides", nameof(rowBytes));
        return rowBytes / Q4_0.BlockBytes;
    }

    /// <summary>Checks a group against <paramref name="tokens"/> activation rows and their offsets; returns the block count.</summary>
    private static int CheckDot(int groupBytes, int xBytes, int tokens, int activationStride, int offsetCount, int offsetRows, int offsetStride,
        int resultCount, int results, bool offsetsNeeded)
    {
        if (groupBytes <= 0 || groupBytes % RecordBytes != 0)
            throw new ArgumentException($"an interleaved group is whole {RecordBytes}-byte records; got {groupBytes} bytes", "group");
        int blocks = groupBytes / RecordBytes;
        int activationBytes = blocks * Q8_0.BlockBytes;
        if (activationStride < activationBytes || xBytes < (long)(tokens - 1) * activationStride + activationBytes)
            throw new ArgumentException($"{tokens} Q8_0 activation row(s) of {activationBytes} bytes, {activationStride} apart, are needed; got {xBytes} bytes", "xq8");
        // The scalar references do not read offsets, so their callers may pass none.
        if ((offsetsNeeded || offsetCount != 0) && (offsetRows > 1 && offsetStride < blocks || offsetCount < (long)(offsetRows - 1) * offsetStride + blocks))
            throw new ArgumentException($"{offsetRows} row(s) of {blocks} offsets are needed; got {offsetCount}", "offsets");
        if (resultCount < results)
            throw new ArgumentException($"{results} results are needed; got {resultCount}", nameof(results));
        return blocks;
    }
}
