using Kiln.Threading;

namespace Kiln.Tensors;

/// <summary>
/// The GotoBLAS/BLIS loop nest around a micro-kernel, run by each worker over its own rectangle of C:
/// columns in blocks of <see cref="BlockColumns"/> (the packed B block stays in the core's L2), k in blocks of
/// <see cref="BlockDepth"/>, rows in blocks of <see cref="BlockRows"/>; inside, one A micro-panel (L1) meets
/// every B micro-panel of the block. Workers split C by whole micro-panels of columns (or rows when C is
/// narrow), and every element's k order is 0, 1, …, k-1 whatever the split, so the thread count never changes
/// a bit. One instance per calling thread, reused, so a product allocates nothing once warm.
/// </summary>
internal sealed unsafe class SgemmBlockedProduct : IParallelWork
{
    /// <summary>
    /// k block: the A micro-panel (8 × 256 floats = 8 KiB) stays in Zen 4's 32 KiB L1d while B micro-panels
    /// stream past it from L2. (128 and 384 measured the same as 256 within the noise of a shared machine.)
    /// </summary>
    public const int BlockDepth = 256;

    /// <summary>
    /// Column block (rounded down to whole tile widths): the packed B block, at most 256 × 512 floats = 512 KiB,
    /// half of a Zen 4 core's L2.
    /// </summary>
    public const int BlockColumns = 512;

    /// <summary>Row block: bounds the packed A buffer (384 × 256 floats = 384 KiB); a multiple of both tile heights.</summary>
    public const int BlockRows = 384;

    /// <summary>Below this many multiply-adds a product runs on the calling thread: a dispatch costs about a microsecond.</summary>
    private const long ParallelThreshold = 1 << 18;

    [ThreadStatic]
    private static SgemmBlockedProduct? t_current;

    private delegate*<float*, float*, float*, nint, int, bool, void> _kernel;
    private int _mr, _nr;
    private float* _a, _b, _c;
    private nint _lda, _ldb, _ldc;
    private int _m, _n, _k;
    private bool _transposeA, _transposeB, _accumulate, _splitColumns;

    /// <summary>
    /// C[m, n] (+)= op(A) · op(B) with the given tile kernel; m, n, k ≥ 1, arguments already checked.
    /// </summary>
    public static void Run(
        delegate*<float*, float*, float*, nint, int, bool, void> kernel, int mr, int nr,
        float* a, nint lda, float* b, nint ldb, float* c, nint ldc, int m, int n, int k,
        bool transposeA, bool transposeB, bool accumulate, WorkerPool? pool)
    {
        var product = t_current ??= new SgemmBlockedProduct();
        product._kernel = kernel;
        product._mr = mr;
        product._nr = nr;
        product._a = a;
        product._b = b;
        product._c = c;
        product._lda = lda;
        product._ldb = ldb;
        product._ldc = ldc;
        product._m = m;
        product._n = n;
        product._k = k;
        product._transposeA = transposeA;
        product._transposeB = transposeB;
        product._accumulate = accumulate;

        int columnPanels = (n + nr - 1) / nr;
        int rowPanels = (m + mr - 1) / mr;
        int threads = pool?.ThreadCount ?? 1;
        // Columns are the natural split (each worker packs only its own B, the larger operand in training shapes);
        // rows only when C is too narrow to give every worker a couple of column panels.
        product._splitColumns = columnPanels >= 2 * threads || columnPanels >= rowPanels;
        int units = product._splitColumns ? columnPanels : rowPanels;
        try
        {
            if (threads == 1 || (long)m * n * k < ParallelThreshold)
                product.Execute(0, units, 0);
            else
                pool!.For(units, product);
        }
        finally
        {
            product._a = product._b = product._c = null;
        }
    }

    public void Execute(int begin, int end, int worker)
    {
        if (_splitColumns)
            Rectangle(0, _m, begin * _nr, Math.Min(_n, end * _nr));
        else
            Rectangle(begin * _mr, Math.Min(_m, end * _mr), 0, _n);
    }

    private void Rectangle(int rowBegin, int rowEnd, int columnBegin, int columnEnd)
    {
        int mr = _mr, nr = _nr;
        int depth = Math.Min(BlockDepth, _k);
        int columnStep = BlockColumns / nr * nr; // whole panels per block, so only the matrix edge has a partial one
        int blockColumns = RoundUp(Math.Min(columnStep, columnEnd - columnBegin), nr);
        int blockRows = RoundUp(Math.Min(BlockRows, rowEnd - rowBegin), mr);
        int packedB = blockColumns * depth;
        int packedA = blockRows * depth;
        float* packB = SgemmScratch.ForCurrentThread().Reserve(packedB + packedA + mr * nr);
        float* packA = packB + packedB;
        float* edge = packA + packedA;

        for (int jc = columnBegin; jc < columnEnd; jc += columnStep)
        {
            int nc = Math.Min(columnStep, columnEnd - jc);
            for (int pc = 0; pc < _k; pc += BlockDepth)
            {
                int kc = Math.Min(BlockDepth, _k - pc);
                bool loadC = _accumulate || pc > 0;
                SgemmPacking.PackB(_b, _ldb, _transposeB, pc, kc, jc, nc, nr, packB);
                for (int ic = rowBegin; ic < rowEnd; ic += BlockRows)
                {
                    int mc = Math.Min(BlockRows, rowEnd - ic);
                    SgemmPacking.PackA(_a, _lda, _transposeA, ic, mc, pc, kc, mr, packA);
                    for (int ir = 0; ir < mc; ir += mr)
                    {
                        int h = Math.Min(mr, mc - ir);
                        float* aPanel = packA + ir * kc;
                        float* cRow = _c + (ic + ir) * _ldc + jc;
                        for (int jr = 0; jr < nc; jr += nr)
                        {
                            int w = Math.Min(nr, nc - jr);
                            float* bPanel = packB + jr * kc;
                            if (h == mr && w == nr)
                                _kernel(aPanel, bPanel, cRow + jr, _ldc, kc, loadC);
                            else
                                EdgeTile(aPanel, bPanel, cRow + jr, h, w, kc, loadC, edge);
                        }
                    }
                }
            }
        }
    }

    /// <summary>A partial tile runs the full kernel on a copy and writes back only the h × w part that exists.</summary>
    private void EdgeTile(float* aPanel, float* bPanel, float* c, int h, int w, int kc, bool loadC, float* edge)
    {
        int nr = _nr;
        if (loadC)
        {
            // Clean lanes outside the tile: leftover bits there could be denormals, which slow the FMAs down.
            new Span<float>(edge, _mr * nr).Clear();
            for (int r = 0; r < h; r++)
                new Span<float>(c + r * _ldc, w).CopyTo(new Span<float>(edge + r * nr, w));
        }
        _kernel(aPanel, bPanel, edge, nr, kc, loadC);
        for (int r = 0; r < h; r++)
            new Span<float>(edge + r * nr, w).CopyTo(new Span<float>(c + r * _ldc, w));
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;
}
