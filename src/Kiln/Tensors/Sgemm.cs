using Kiln.Threading;

namespace Kiln.Tensors;

/// <summary>
/// Single-precision general matrix multiply for training: C[m, n] (+)= op(A)[m, k] · op(B)[k, n], all row-major,
/// op(X) = X or Xᵀ. The SIMD paths are GotoBLAS/BLIS style (<see cref="SgemmBlockedProduct"/>: cache blocks,
/// packed panels, <see cref="SgemmMicroKernels"/> register tiles) and split over a <see cref="WorkerPool"/>.
/// Each element is one fused multiply-add chain over p = 0, 1, …, k-1 started from C (accumulate) or zero, as
/// <see cref="MultiplyScalar(ReadOnlySpan{float}, ReadOnlySpan{float}, Span{float}, int, int, int, bool, bool, bool)"/>
/// writes it, so every path and every thread count gives the same bits.
/// </summary>
public static unsafe class Sgemm
{
    /// <summary>
    /// C[m, n] (+)= op(A) · op(B) with dense row-major storage: A is m × k (k × m when <paramref name="transposeA"/>),
    /// B is k × n (n × k when <paramref name="transposeB"/>). <paramref name="accumulate"/> adds to C instead of
    /// overwriting it. The pool, if given, splits the product over its threads.
    /// </summary>
    public static void Multiply(
        ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate, WorkerPool? pool = null) =>
        Multiply(a, transposeA ? m : k, b, transposeB ? k : n, c, n, m, n, k, transposeA, transposeB, accumulate, pool);

    /// <summary>
    /// As the dense overload, with explicit leading dimensions (floats between consecutive stored rows), so
    /// sub-matrices of larger buffers can be used in place.
    /// </summary>
    public static void Multiply(
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate, WorkerPool? pool = null)
    {
        if (CpuPaths.PreferAvx512)
            MultiplyAvx512(a, lda, b, ldb, c, ldc, m, n, k, transposeA, transposeB, accumulate, pool);
        else if (CpuPaths.CanAvx2)
            MultiplyAvx2(a, lda, b, ldb, c, ldc, m, n, k, transposeA, transposeB, accumulate, pool);
        else
            MultiplyScalar(a, lda, b, ldb, c, ldc, m, n, k, transposeA, transposeB, accumulate);
    }

    /// <summary>The reference: a plain triple loop, one fused multiply-add per term in k order.</summary>
    public static void MultiplyScalar(
        ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate) =>
        MultiplyScalar(a, transposeA ? m : k, b, transposeB ? k : n, c, n, m, n, k, transposeA, transposeB, accumulate);

    public static void MultiplyScalar(
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate)
    {
        CheckArguments(a, lda, b, ldb, c, ldc, m, n, k, transposeA, transposeB);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = accumulate ? c[i * ldc + j] : 0f;
                for (int p = 0; p < k; p++)
                {
                    float x = transposeA ? a[p * lda + i] : a[i * lda + p];
                    float y = transposeB ? b[j * ldb + p] : b[p * ldb + j];
                    sum = MathF.FusedMultiplyAdd(x, y, sum);
                }
                c[i * ldc + j] = sum;
            }
        }
    }

    internal static void MultiplyAvx512(
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate, WorkerPool? pool = null) =>
        Blocked(&SgemmMicroKernels.Avx512, SgemmMicroKernels.Avx512Rows, SgemmMicroKernels.Avx512Columns,
            a, lda, b, ldb, c, ldc, m, n, k, transposeA, transposeB, accumulate, pool);

    internal static void MultiplyAvx2(
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate, WorkerPool? pool = null) =>
        Blocked(&SgemmMicroKernels.Avx2, SgemmMicroKernels.Avx2Rows, SgemmMicroKernels.Avx2Columns,
            a, lda, b, ldb, c, ldc, m, n, k, transposeA, transposeB, accumulate, pool);

    private static void Blocked(
        delegate*<float*, float*, float*, nint, int, bool, void> kernel, int mr, int nr,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate, WorkerPool? pool)
    {
        CheckArguments(a, lda, b, ldb, c, ldc, m, n, k, transposeA, transposeB);
        if (m == 0 || n == 0)
            return;
        if (k == 0)
        {
            // An empty sum: C = 0, or C unchanged when accumulating.
            if (!accumulate)
            {
                for (int i = 0; i < m; i++)
                    c.Slice(i * ldc, n).Clear();
            }
            return;
        }
        fixed (float* pa = a, pb = b, pc = c)
            SgemmBlockedProduct.Run(kernel, mr, nr, pa, lda, pb, ldb, pc, ldc, m, n, k, transposeA, transposeB, accumulate, pool);
    }

    private static void CheckArguments(
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, int m, int n, int k,
        bool transposeA, bool transposeB)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        CheckMatrix(a.Length, transposeA ? k : m, transposeA ? m : k, lda, transposeA ? "A (k × m)" : "A (m × k)", nameof(a), nameof(lda));
        CheckMatrix(b.Length, transposeB ? n : k, transposeB ? k : n, ldb, transposeB ? "B (n × k)" : "B (k × n)", nameof(b), nameof(ldb));
        CheckMatrix(c.Length, m, n, ldc, "C (m × n)", nameof(c), nameof(ldc));
        if (c.Overlaps(a) || c.Overlaps(b))
            throw new ArgumentException("C must not share memory with A or B: it is written while they are still read", nameof(c));
    }

    private static void CheckMatrix(int length, int rows, int columns, int ld, string what, string name, string ldName)
    {
        if (ld < columns)
            throw new ArgumentOutOfRangeException(ldName, ld, $"{what} stores rows of {columns} floats; the leading dimension cannot be smaller");
        long need = rows == 0 || columns == 0 ? 0 : (long)(rows - 1) * ld + columns;
        if (length < need)
            throw new ArgumentException($"{what} with {rows} rows of {columns} floats, {ld} apart, needs {need} floats; got {length}", name);
    }
}
