using System.Runtime.CompilerServices;

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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(float* a, nint lda, bool transposed, int i0, int rows, int p0, int kc, int mr, float* dst)
    {
        for (int ir = 0; ir < rows; ir += mr)
        {
            int h = Math.Min(mr, rows - ir);
            if (h < mr)
                new Span<float>(dst, mr * kc).Clear();
            if (transposed)
            {
                // A is stored k-major: each k step of the panel is h contiguous floats.
                float* src = a + (nint)p0 * lda + i0 + ir;
                for (int p = 0; p < kc; p++)
                {
                    float* s = src + p * lda;
                    float* d = dst + p * mr;
                    for (int r = 0; r < h; r++)
                        d[r] = s[r];
                }
            }
            else
            {
                // Row r of the panel is contiguous in A; walking all h rows per k step keeps the writes sequential.
                float* src = a + (nint)(i0 + ir) * lda + p0;
                for (int p = 0; p < kc; p++)
                {
                    float* s = src + p;
                    float* d = dst + p * mr;
                    for (int r = 0; r < h; r++)
                        d[r] = s[r * lda];
                }
            }
            dst += mr * kc;
        }
    }

    /// <summary>
    /// Packs op(B)[p0 .. p0+kc, j0 .. j0+cols] into ceil(cols / nr) panels of kc × nr, panel after panel;
    /// element (p, j) of a panel lands at p * nr + j.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(float* b, nint ldb, bool transposed, int p0, int kc, int j0, int cols, int nr, float* dst)
    {
        for (int jr = 0; jr < cols; jr += nr)
        {
            int w = Math.Min(nr, cols - jr);
            if (w < nr)
                new Span<float>(dst, nr * kc).Clear();
            if (transposed)
            {
                // B is stored n-major (a weight matrix [out, in]): column j of op(B) is row j of B.
                float* src = b + (nint)(j0 + jr) * ldb + p0;
                for (int p = 0; p < kc; p++)
                {
                    float* s = src + p;
                    float* d = dst + p * nr;
                    for (int j = 0; j < w; j++)
                        d[j] = s[j * ldb];
                }
            }
            else
            {
                float* src = b + (nint)p0 * ldb + j0 + jr;
                for (int p = 0; p < kc; p++)
                    Unsafe.CopyBlockUnaligned(dst + p * nr, src + p * ldb, (uint)(w * sizeof(float)));
            }
            dst += nr * kc;
        }
    }
}
