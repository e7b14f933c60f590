using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// Float-weight batch products in <see cref="F32.DotSingleAccumulator"/>'s order (tinyBLAS's): y[t, r] is, bit for
/// bit, the single-accumulator dot of weight row r with activation row t. The AVX-512 path keeps that order per
/// output while filling 512-bit registers: one zmm holds the 8-lane accumulators of two weight rows side by side
/// (each 256-bit half is one tinyBLAS chain), the activation chunk is broadcast to both halves, and an 8-row ×
/// 6-token tile runs 24 such chains (24 FMAs per 10 loads). Columns go in chunks (<see cref="ChunkColumns"/>) whose
/// packed weight panel stays in L2 while every token tile passes over it; between chunks the accumulators are stored
/// and reloaded unchanged, so each lane's FMA sequence is the one of the plain loop. F16 rows are widened once per
/// chunk of the panel.
/// </summary>
public static unsafe class SingleAccumulatorGemm
{
    /// <summary>Weight rows per register tile (four row pairs).</summary>
    public const int TileRows = 8;

    /// <summary>Activation rows (tokens) per register tile.</summary>
    public const int TileTokens = 6;

    /// <summary>
    /// Columns per cache chunk. A tile loads only 4 panel vectors and 6 activation chunks per 24 FMAs, so both may
    /// come from L2: measured on Zen 4 (2048 columns, 64 tokens), 512-column chunks that keep the panel in L1 were
    /// slower than one 2048-column pass, whose tiles write their sums straight from the registers.
    /// </summary>
    public const int ChunkColumns = 2048;

    private const int PanelStep = TileRows * F32.Lanes; // floats of the panel per 8 columns
    private const int TileAccumulatorFloats = TileTokens * PanelStep;

    /// <summary>Floats of scratch the products need for a batch of <paramref name="tokens"/> activation rows.</summary>
    public static int ScratchFloats(int tokens) =>
        16 + TileRows * ChunkColumns + TileCount(Math.Max(tokens, TileTokens)) * TileAccumulatorFloats;

    /// <summary>
    /// y[t·<paramref name="yStride"/> + r] = F16.DotSingleAccumulator(row r, x[t·<paramref name="xStride"/> ..]) for
    /// r &lt; <paramref name="rows"/>, t &lt; <paramref name="tokens"/>; rows are <paramref name="rowBytes"/> apart in
    /// <paramref name="w"/>, each <paramref name="n"/> halves (a multiple of 8).
    /// </summary>
    public static void MultiplyF16(ReadOnlySpan<byte> w, int rowBytes, int rows, int n, ReadOnlySpan<float> x, int xStride, int tokens,
        Span<float> y, int yStride, Span<float> scratch)
    {
        CheckArguments(w.Length, rowBytes, 2L * n, rows, n, x.Length, xStride, tokens, y.Length, yStride, scratch.Length);
        if (CpuPaths.CanAvx512 && rows >= TileRows && tokens >= TileTokens)
        {
            fixed (byte* pw = w)
            fixed (float* px = x, py = y, ps = scratch)
                MultiplyAvx512(pw, rowBytes, halves: true, rows, n, px, xStride, tokens, py, yStride, ps);
            return;
        }
        MultiplyF16Scalar(w, rowBytes, rows, n, x, xStride, tokens, y, yStride);
    }

    /// <summary>Reference for <see cref="MultiplyF16"/>: the scalar single-accumulator dot per output.</summary>
    public static void MultiplyF16Scalar(ReadOnlySpan<byte> w, int rowBytes, int rows, int n, ReadOnlySpan<float> x, int xStride, int tokens,
        Span<float> y, int yStride)
    {
        CheckArguments(w.Length, rowBytes, 2L * n, rows, n, x.Length, xStride, tokens, y.Length, yStride, int.MaxValue);
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < rows; r++)
                y[t * yStride + r] = F16.DotSingleAccumulatorScalar(w.Slice(r * rowBytes, 2 * n), x.Slice(t * xStride, n));
        }
    }

    /// <summary>As <see cref="MultiplyF16"/> for float rows, <paramref name="rowStride"/> floats apart.</summary>
    public static void MultiplyF32(ReadOnlySpan<float> w, int rowStride, int rows, int n, ReadOnlySpan<float> x, int xStride, int tokens,
        Span<float> y, int yStride, Span<float> scratch)
    {
        CheckArguments(w.Length, rowStride, n, rows, n, x.Length, xStride, tokens, y.Length, yStride, scratch.Length);
        if (CpuPaths.CanAvx512 && rows >= TileRows && tokens >= TileTokens)
        {
            fixed (float* pw = w, px = x, py = y, ps = scratch)
                MultiplyAvx512((byte*)pw, rowStride * sizeof(float), halves: false, rows, n, px, xStride, tokens, py, yStride, ps);
            return;
        }
        MultiplyF32Scalar(w, rowStride, rows, n, x, xStride, tokens, y, yStride);
    }

    /// <summary>Reference for <see cref="MultiplyF32"/>: the scalar single-accumulator dot per output.</summary>
    public static void MultiplyF32Scalar(ReadOnlySpan<float> w, int rowStride, int rows, int n, ReadOnlySpan<float> x, int xStride, int tokens,
        Span<float> y, int yStride)
    {
        CheckArguments(w.Length, rowStride, n, rows, n, x.Length, xStride, tokens, y.Length, yStride, int.MaxValue);
        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < rows; r++)
                y[t * yStride + r] = F32.DotSingleAccumulatorScalar(w.Slice(r * rowStride, n), x.Slice(t * xStride, n));
        }
    }

    /// <summary>
    /// Rows and tokens that do not fill the last tile are covered by a last tile that overlaps the one before: an
    /// output computed twice gets the same bits both times, and every tile keeps its own accumulators, so the overlap
    /// never advances a chain twice. Needs at least <see cref="TileRows"/> rows and <see cref="TileTokens"/> tokens.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void MultiplyAvx512(byte* w, int rowBytes, bool halves, int rows, int n, float* x, int xStride, int tokens,
        float* y, int yStride, float* scratch)
    {
        float* panel = (float*)(((nint)scratch + 63) & ~(nint)63);
        float* accumulators = panel + TileRows * ChunkColumns;
        int tiles = TileCount(tokens);
        int elementBytes = halves ? sizeof(ushort) : sizeof(float);
        int rowBlocks = (rows + TileRows - 1) / TileRows;
        for (int rb = 0; rb < rowBlocks; rb++)
        {
            int r0 = Math.Min(rb * TileRows, rows - TileRows);
            byte* block = w + (long)r0 * rowBytes;
            for (int k0 = 0; k0 < n; k0 += ChunkColumns)
            {
                int kc = Math.Min(ChunkColumns, n - k0);
                if (halves)
                    PackHalves(block, rowBytes, k0, kc, panel);
                else
                    PackFloats(block, rowBytes, k0, kc, panel);
                // The weights the next pack reads come from memory: fetch them into L2 while the tiles run, a share per
                // tile, so that packing does not wait on eight cold row streams.
                byte* next = null;
                int nextK0 = k0 + kc, nextKc = 0;
                if (nextK0 < n)
                {
                    next = block;
                    nextKc = Math.Min(ChunkColumns, n - nextK0);
                }
                else if (rb + 1 < rowBlocks)
                {
                    next = w + (long)Math.Min((rb + 1) * TileRows, rows - TileRows) * rowBytes;
                    nextK0 = 0;
                    nextKc = Math.Min(ChunkColumns, n);
                }
                int linesPerRow = (nextKc * elementBytes + 63) / 64, lines = next == null ? 0 : TileRows * linesPerRow;
                int line = 0, row = 0, column = 0;
                for (int q = 0; q < tiles; q++)
                {
                    int t0 = Math.Min(q * TileTokens, tokens - TileTokens);
                    Tile8x6(panel, kc / F32.Lanes, x + (long)t0 * xStride + k0, xStride, accumulators + q * TileAccumulatorFloats, load: k0 > 0,
                        k0 + kc == n ? y + (long)t0 * yStride + r0 : null, yStride);
                    for (int end = (int)((long)(q + 1) * lines / tiles); line < end; line++)
                    {
                        Sse.Prefetch1(next + (long)row * rowBytes + (long)nextK0 * elementBytes + column);
                        column += 64;
                        if (column >= linesPerRow * 64)
                        {
                            column = 0;
                            row++;
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// The eight outputs of one token: four row-pair accumulators, each half summed as
    /// <see cref="F32.SumLanesHalving(Vector256{float})"/> does, ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)),
    /// eight at a time instead of one (float addition is commutative, so only the grouping has to match).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> SumPairLanes(Vector512<float> p0, Vector512<float> p1, Vector512<float> p2, Vector512<float> p3)
    {
        // 128-bit blocks: (lanes 0–3, lanes 4–7) of rows 0..3 gathered apart, then t_k = l_k + l_(k+4) per row.
        Vector512<float> t01 = Avx512F.Shuffle4x128(p0, p1, 0b10_00_10_00) + Avx512F.Shuffle4x128(p0, p1, 0b11_01_11_01);
        Vector512<float> t23 = Avx512F.Shuffle4x128(p2, p3, 0b10_00_10_00) + Avx512F.Shuffle4x128(p2, p3, 0b11_01_11_01);
        // Per block: s = (t0 + t2, t1 + t3, ..), then s0 + s1.
        t01 += Avx512F.Permute4x32(t01, 0b01_00_11_10);
        t23 += Avx512F.Permute4x32(t23, 0b01_00_11_10);
        t01 += Avx512F.Permute4x32(t01, 0b10_11_00_01);
        t23 += Avx512F.Permute4x32(t23, 0b10_11_00_01);
        return Avx512F.PermuteVar16x32x2(t01, Vector512.Create(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0), t23).GetLower();
    }

    /// <summary>
    /// Columns [k0, k0 + kc) of eight F16 rows, widened, in tile order: per 8 columns, rows (0, 1), (2, 3), (4, 5),
    /// (6, 7) as four 16-float pairs.
    /// </summary>
    private static void PackHalves(byte* block, int rowBytes, int k0, int kc, float* panel)
    {
        for (int p = 0; p < TileRows / 2; p++)
        {
            ushort* a = (ushort*)(block + (long)(2 * p) * rowBytes) + k0;
            ushort* b = (ushort*)(block + (long)(2 * p + 1) * rowBytes) + k0;
            float* dst = panel + p * 16;
            for (int i = 0; i < kc; i += F32.Lanes, dst += PanelStep)
            {
                Vector256<ushort> both = Vector256.Create(Vector128.Load(a + i), Vector128.Load(b + i));
                HalfBits.ToSingle(Avx512F.ConvertToVector512UInt32(both)).Store(dst);
            }
        }
    }

    /// <summary>As <see cref="PackHalves"/> for float rows.</summary>
    private static void PackFloats(byte* block, int rowBytes, int k0, int kc, float* panel)
    {
        for (int p = 0; p < TileRows / 2; p++)
        {
            float* a = (float*)(block + (long)(2 * p) * rowBytes) + k0;
            float* b = (float*)(block + (long)(2 * p + 1) * rowBytes) + k0;
            float* dst = panel + p * 16;
            for (int i = 0; i < kc; i += F32.Lanes, dst += PanelStep)
                Vector512.Create(Vector256.Load(a + i), Vector256.Load(b + i)).Store(dst);
        }
    }

    /// <summary>
    /// Eight packed rows × six tokens over <paramref name="steps"/> steps of 8 columns. acc holds the 24 row-pair
    /// accumulators as (token j, pair p) at (4j + p)·16; <paramref name="load"/> continues them, else they start at 0.
    /// After the last chunk (<paramref name="y"/> not null) the sums go to y, token j at j·<paramref name="yStride"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile8x6(float* panel, int steps, float* x, nint xStride, float* acc, bool load, float* y, nint yStride)
    {
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        Vector512<float> c40 = default, c41 = default, c42 = default, c43 = default;
        Vector512<float> c50 = default, c51 = default, c52 = default, c53 = default;
        if (load)
        {
            c00 = Vector512.Load(acc); c01 = Vector512.Load(acc + 16); c02 = Vector512.Load(acc + 32); c03 = Vector512.Load(acc + 48);
            c10 = Vector512.Load(acc + 64); c11 = Vector512.Load(acc + 80); c12 = Vector512.Load(acc + 96); c13 = Vector512.Load(acc + 112);
            c20 = Vector512.Load(acc + 128); c21 = Vector512.Load(acc + 144); c22 = Vector512.Load(acc + 160); c23 = Vector512.Load(acc + 176);
            c30 = Vector512.Load(acc + 192); c31 = Vector512.Load(acc + 208); c32 = Vector512.Load(acc + 224); c33 = Vector512.Load(acc + 240);
            c40 = Vector512.Load(acc + 256); c41 = Vector512.Load(acc + 272); c42 = Vector512.Load(acc + 288); c43 = Vector512.Load(acc + 304);
            c50 = Vector512.Load(acc + 320); c51 = Vector512.Load(acc + 336); c52 = Vector512.Load(acc + 352); c53 = Vector512.Load(acc + 368);
        }
        double* x0 = (double*)x, x1 = (double*)(x + xStride), x2 = (double*)(x + 2 * xStride);
        double* x3 = (double*)(x + 3 * xStride), x4 = (double*)(x + 4 * xStride), x5 = (double*)(x + 5 * xStride);
        // Eight floats are four doubles: vbroadcastf64x4 puts the same 8-float chunk in both halves.
        for (nint i = 0, end = (nint)steps * 4; i < end; i += 4, panel += PanelStep)
        {
            Vector512<float> w0 = Vector512.Load(panel), w1 = Vector512.Load(panel + 16);
            Vector512<float> w2 = Vector512.Load(panel + 32), w3 = Vector512.Load(panel + 48);
            Vector512<float> v = Avx512F.BroadcastVector256ToVector512(x0 + i).AsSingle();
            c00 = Avx512F.FusedMultiplyAdd(w0, v, c00); c01 = Avx512F.FusedMultiplyAdd(w1, v, c01);
            c02 = Avx512F.FusedMultiplyAdd(w2, v, c02); c03 = Avx512F.FusedMultiplyAdd(w3, v, c03);
            v = Avx512F.BroadcastVector256ToVector512(x1 + i).AsSingle();
            c10 = Avx512F.FusedMultiplyAdd(w0, v, c10); c11 = Avx512F.FusedMultiplyAdd(w1, v, c11);
            c12 = Avx512F.FusedMultiplyAdd(w2, v, c12); c13 = Avx512F.FusedMultiplyAdd(w3, v, c13);
            v = Avx512F.BroadcastVector256ToVector512(x2 + i).AsSingle();
            c20 = Avx512F.FusedMultiplyAdd(w0, v, c20); c21 = Avx512F.FusedMultiplyAdd(w1, v, c21);
            c22 = Avx512F.FusedMultiplyAdd(w2, v, c22); c23 = Avx512F.FusedMultiplyAdd(w3, v, c23);
            v = Avx512F.BroadcastVector256ToVector512(x3 + i).AsSingle();
            c30 = Avx512F.FusedMultiplyAdd(w0, v, c30); c31 = Avx512F.FusedMultiplyAdd(w1, v, c31);
            c32 = Avx512F.FusedMultiplyAdd(w2, v, c32); c33 = Avx512F.FusedMultiplyAdd(w3, v, c33);
            v = Avx512F.BroadcastVector256ToVector512(x4 + i).AsSingle();
            c40 = Avx512F.FusedMultiplyAdd(w0, v, c40); c41 = Avx512F.FusedMultiplyAdd(w1, v, c41);
            c42 = Avx512F.FusedMultiplyAdd(w2, v, c42); c43 = Avx512F.FusedMultiplyAdd(w3, v, c43);
            v = Avx512F.BroadcastVector256ToVector512(x5 + i).AsSingle();
            c50 = Avx512F.FusedMultiplyAdd(w0, v, c50); c51 = Avx512F.FusedMultiplyAdd(w1, v, c51);
            c52 = Avx512F.FusedMultiplyAdd(w2, v, c52); c53 = Avx512F.FusedMultiplyAdd(w3, v, c53);
        }
        if (y != null)
        {
            SumPairLanes(c00, c01, c02, c03).Store(y);
            SumPairLanes(c10, c11, c12, c13).Store(y + yStride);
            SumPairLanes(c20, c21, c22, c23).Store(y + 2 * yStride);
            SumPairLanes(c30, c31, c32, c33).Store(y + 3 * yStride);
            SumPairLanes(c40, c41, c42, c43).Store(y + 4 * yStride);
            SumPairLanes(c50, c51, c52, c53).Store(y + 5 * yStride);
            return;
        }
        c00.Store(acc); c01.Store(acc + 16); c02.Store(acc + 32); c03.Store(acc + 48);
        c10.Store(acc + 64); c11.Store(acc + 80); c12.Store(acc + 96); c13.Store(acc + 112);
        c20.Store(acc + 128); c21.Store(acc + 144); c22.Store(acc + 160); c23.Store(acc + 176);
        c30.Store(acc + 192); c31.Store(acc + 208); c32.Store(acc + 224); c33.Store(acc + 240);
        c40.Store(acc + 256); c41.Store(acc + 272); c42.Store(acc + 288); c43.Store(acc + 304);
        c50.Store(acc + 320); c51.Store(acc + 336); c52.Store(acc + 352); c53.Store(acc + 368);
    }

    private static int TileCount(int tokens) => (tokens + TileTokens - 1) / TileTokens;

    private static void CheckArguments(int wLength, int rowStride, long rowLength, int rows, int n, int xLength, int xStride, int tokens,
        int yLength, int yStride, int scratchLength)
    {
        if (n < 0 || n % F32.Lanes != 0)
            throw new ArgumentException($"the single-accumulator order needs a length that is a multiple of {F32.Lanes}; got {n}", nameof(n));
        if (rows < 0 || tokens < 0)
            throw new ArgumentException($"rows and tokens must not be negative; got {rows} and {tokens}", nameof(rows));
        if (rows == 0 || tokens == 0)
            return;
        if (rowStride < rowLength || wLength < (long)(rows - 1) * rowStride + rowLength)
            throw new ArgumentException($"{rows} weight rows of {n} values, {rowStride} elements (bytes for F16) apart, are needed", "w");
        if (xStride < n || xLength < (long)(tokens - 1) * xStride + n)
            throw new ArgumentException($"{tokens} activation rows of {n} floats, {xStride} apart, are needed", "x");
        if (yStride < rows || yLength < (long)(tokens - 1) * yStride + rows)
            throw new ArgumentException($"{tokens} output rows of {rows} floats, {yStride} apart, are needed", "y");
        if (scratchLength < ScratchFloats(tokens))
            throw new ArgumentException($"{ScratchFloats(tokens)} floats of scratch are needed, got {scratchLength}", "scratch");
    }
}
