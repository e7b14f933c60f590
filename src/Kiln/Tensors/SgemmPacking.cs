using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Tensors;

/// <summary>
/// Copies blocks of op(A) and op(B) into the layout the micro-kernels stream: micro-panels of <c>mr</c> rows of
/// op(A) (or <c>nr</c> columns of op(B)) stored k step after k step, so the kernel reads both operands with unit
/// stride whatever the transposes were. Rows or columns past the matrix edge are zero, which lets partial tiles
/// run the full kernel (the padded lanes are computed and never stored).
/// </summary>
internal static unsafe class SgemmPacking
{
    /// <summary>
    /// Packs op(A)[i0 .. i0+rows, p0 .. p0+kc] into ceil(rows / mr) panels of mr × kc, panel after panel;
    /// element (r, p) of a panel lands at p * mr + r.
    /// </summary>
    public static void PackA(float* a, nint lda, bool transposed, int i0, int rows, int p0, int kc, int mr, float* dst)
    {
        if (transposed)
        {
            Deal(a + (nint)p0 * lda + i0, lda, kc, rows, mr, dst); // stored k × m: a k step is a contiguous row
            return;
        }
        for (int ir = 0; ir < rows; ir += mr)
        {
            int h = Math.Min(mr, rows - ir);
            if (h < mr)
                new Span<float>(dst, mr * kc).Clear();
            Transpose(a + (nint)(i0 + ir) * lda + p0, lda, h, kc, dst, mr);
            dst += mr * kc;
        }
    }

    /// <summary>
    /// Packs op(B)[p0 .. p0+kc, j0 .. j0+cols] into ceil(cols / nr) panels of kc × nr, panel after panel;
    /// element (p, j) of a panel lands at p * nr + j.
    /// </summary>
    public static void PackB(float* b, nint ldb, bool transposed, int p0, int kc, int j0, int cols, int nr, float* dst)
    {
        if (!transposed)
        {
            Deal(b + (nint)p0 * ldb + j0, ldb, kc, cols, nr, dst);
            return;
        }
        for (int jr = 0; jr < cols; jr += nr)
        {
            int w = Math.Min(nr, cols - jr);
            if (w < nr)
                new Span<float>(dst, nr * kc).Clear();
            Transpose(b + (nint)(j0 + jr) * ldb + p0, ldb, w, kc, dst, nr); // a weight [out, in]: column j of op(B) is row j
            dst += nr * kc;
        }
    }

    /// <summary>
    /// For an operand whose k steps are stored as rows (A transposed, B not): each k step's block row is read once,
    /// left to right, and dealt out to the panels of <paramref name="width"/>. Going panel by panel instead reads
    /// 48–128 bytes per row down kc rows, which the prefetchers follow badly.
    /// </summary>
    private static void Deal(float* src, nint ld, int kc, int count, int width, float* dst)
    {
        int full = count / width;
        int rest = count - full * width;
        if (rest > 0)
            new Span<float>(dst + full * width * kc, width * kc).Clear();
        int vectors = Vector256.IsHardwareAccelerated ? width / Vector256<float>.Count * Vector256<float>.Count : 0;
        for (int p = 0; p < kc; p++)
        {
            float* s = src + p * ld;
            float* d = dst + p * width;
            for (int panel = 0; panel < full; panel++)
            {
                int x = 0;
                for (; x < vectors; x += Vector256<float>.Count)
                    Vector256.Load(s + x).Store(d + x);
                for (; x < width; x++)
                    d[x] = s[x];
                s += width;
                d += width * kc;
            }
            for (int x = 0; x < rest; x++)
                d[x] = s[x];
        }
    }

    /// <summary>
    /// dst[p * width + r] = src[r * ld + p] for r &lt; rows, p &lt; kc: 8 × 8 and 4 × 4 blocks transposed in registers
    /// (a scalar gather would cost two memory operations per float, which shows next to the kernel at k = 3072).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Transpose(float* src, nint ld, int rows, int kc, float* dst, int width)
    {
        int r = 0;
        if (Avx.IsSupported)
        {
            for (; r + 8 <= rows; r += 8)
            {
                float* s = src + r * ld;
                float* d = dst + r;
                int p = 0;
                for (; p + 8 <= kc; p += 8)
                    Transpose8x8(s + p, ld, d + p * width, width);
                Gather(s, ld, 8, p, kc, d, width);
            }
        }
        if (Sse.IsSupported)
        {
            for (; r + 4 <= rows; r += 4)
            {
                float* s = src + r * ld;
                float* d = dst + r;
                int p = 0;
                for (; p + 4 <= kc; p += 4)
                    Transpose4x4(s + p, ld, d + p * width, width);
                Gather(s, ld, 4, p, kc, d, width);
            }
        }
        Gather(src + r * ld, ld, rows - r, 0, kc, dst + r, width);
    }

    private static void Gather(float* src, nint ld, int rows, int pBegin, int pEnd, float* dst, int width)
    {
        for (int p = pBegin; p < pEnd; p++)
        {
            for (int r = 0; r < rows; r++)
                dst[p * width + r] = src[r * ld + p];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* s, nint ld, float* d, int width)
    {
        // Rows r0..r7 → pairs interleaved → 4-row columns per 128-bit lane → lanes swapped into whole columns.
        var t0 = Avx.UnpackLow(Vector256.Load(s), Vector256.Load(s + ld));
        var t1 = Avx.UnpackHigh(Vector256.Load(s), Vector256.Load(s + ld));
        var t2 = Avx.UnpackLow(Vector256.Load(s + 2 * ld), Vector256.Load(s + 3 * ld));
        var t3 = Avx.UnpackHigh(Vector256.Load(s + 2 * ld), Vector256.Load(s + 3 * ld));
        var t4 = Avx.UnpackLow(Vector256.Load(s + 4 * ld), Vector256.Load(s + 5 * ld));
        var t5 = Avx.UnpackHigh(Vector256.Load(s + 4 * ld), Vector256.Load(s + 5 * ld));
        var t6 = Avx.UnpackLow(Vector256.Load(s + 6 * ld), Vector256.Load(s + 7 * ld));
        var t7 = Avx.UnpackHigh(Vector256.Load(s + 6 * ld), Vector256.Load(s + 7 * ld));
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Permute2x128(u0, u4, 0x20).Store(d);
        Avx.Permute2x128(u1, u5, 0x20).Store(d + width);
        Avx.Permute2x128(u2, u6, 0x20).Store(d + 2 * width);
        Avx.Permute2x128(u3, u7, 0x20).Store(d + 3 * width);
        Avx.Permute2x128(u0, u4, 0x31).Store(d + 4 * width);
        Avx.Permute2x128(u1, u5, 0x31).Store(d + 5 * width);
        Avx.Permute2x128(u2, u6, 0x31).Store(d + 6 * width);
        Avx.Permute2x128(u3, u7, 0x31).Store(d + 7 * width);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x4(float* s, nint ld, float* d, int width)
    {
        var t0 = Sse.UnpackLow(Vector128.Load(s), Vector128.Load(s + ld));
        var t1 = Sse.UnpackHigh(Vector128.Load(s), Vector128.Load(s + ld));
        var t2 = Sse.UnpackLow(Vector128.Load(s + 2 * ld), Vector128.Load(s + 3 * ld));
        var t3 = Sse.UnpackHigh(Vector128.Load(s + 2 * ld), Vector128.Load(s + 3 * ld));
        Sse.MoveLowToHigh(t0, t2).Store(d);
        Sse.MoveHighToLow(t2, t0).Store(d + width);
        Sse.MoveLowToHigh(t1, t3).Store(d + 2 * width);
        Sse.MoveHighToLow(t3, t1).Store(d + 3 * width);
    }
}
