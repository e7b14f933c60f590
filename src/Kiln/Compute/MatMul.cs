using System.Runtime.InteropServices;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Compute;

/// <summary>
/// y[t, r] = W[r, :] · x[t, :] for a batch of T activation rows, split over the worker pool by weight rows.
/// As in ggml, the activations are converted once per product to the type the weight's dot kernel wants
/// (Q8_0 for the 32-blocks, Q8_K for the K types, F16-rounded floats for F16 …), so the inner loop is a
/// same-type dot product, and each weight row is read once for the whole batch while it is hot in cache.
/// Batches use tile kernels where a type has them (F32/F16 8×6 in 512-bit registers, <see cref="SingleAccumulatorGemm"/>, for 6+ tokens on AVX-512 CPUs, else 4×4;
/// Q8_0 4×4, Q4_0 8×8 and 8×4, Q4_K/Q5_K/Q6_K 1×4 rows × tokens; single tokens go eight Q4_0, four Q8_0 or (AVX-512) four Q4_K rows at a time;
/// Q4_0 matrices interleaved at load, <see cref="WeightLayout.Q4_0Interleaved8"/>, go through <see cref="Q4_0x8"/>: 16×8 and 16×4 tiles with AVX-512, else 8×4); every
/// output of a tile has exactly the bits of the one-row kernel llama.cpp's matching path would give.
/// </summary>
public sealed unsafe class MatMul : IParallelWork
{
    private readonly WorkerPool _pool;
    private byte[] _activations = [];
    private int[] _offsets = [];
    private float[][] _rowScratch = [];
    private float[][] _tileScratch = [];
    private WeightMatrix? _w;
    private int _batch;
    private int _activationRowBytes;
    private bool _f16Prescaled;
    private float* _y;
    private float* _x;
    private readonly ActivationRows _activationRows;
    // What _activations holds: the input it was converted from, its rows, and the conversion.
    private (nint X, int Batch, GgmlType Type, int Columns, bool F16Prescaled) _prepared;

    /// <summary>Batches from this many rows convert their activations over the pool.</summary>
    private const int ParallelActivationRows = 8;

    public MatMul(WorkerPool pool)
    {
        _pool = pool;
        _activationRows = new ActivationRows(this);
    }

    /// <summary>
    /// When set, every row of a product gets the bits it would get in any other batch: float weights then use the
    /// batch order (tinyBLAS's single accumulator) even for one row, instead of llama.cpp's one-row order. The
    /// quantized tile kernels already give each output the one-row bits, so only F32/F16 change. The serving runner
    /// sets it so that a sequence's tokens do not depend on which others share its step.
    /// </summary>
    public bool BatchInvariant { get; init; }

    /// <summary>Computes y (T × W.Rows, row-major) from x (T × W.Columns, row-major).</summary>
    /// <param name="inputUnchanged">
    /// The caller's promise that x is the span of the previous Run on this MatMul and holds the same values: when
    /// that Run converted it for a weight of the same type and width, the conversion is reused (the query, key and
    /// value products of a layer share one input, as do gate and up). Otherwise it is ignored.
    /// </param>
    public void Run(WeightMatrix w, ReadOnlySpan<float> x, int batch, Span<float> y, bool inputUnchanged = false)
    {
        int cols = w.Columns;
        if (x.Length < batch * cols || y.Length < batch * w.Rows)
            throw new ArgumentException("matmul buffers too small");
        if (_rowScratch.Length < _pool.ThreadCount || _rowScratch[0].Length < 4 * cols)
        {
            _rowScratch = new float[_pool.ThreadCount][];
            for (int i = 0; i < _rowScratch.Length; i++)
                _rowScratch[i] = GC.AllocateUninitializedArray<float>(4 * cols);
        }
        if (UsesTiles(w, batch))
        {
            int floats = SingleAccumulatorGemm.ScratchFloats(batch);
            if (_tileScratch.Length < _pool.ThreadCount || _tileScratch[0].Length < floats)
            {
                _tileScratch = new float[_pool.ThreadCount][];
                for (int i = 0; i < _tileScratch.Length; i++)
                    _tileScratch[i] = GC.AllocateUninitializedArray<float>(floats);
            }
        }
        int rowBytes = checked((int)RowKernels.ActivationBytes(w.Type, cols));
        int need = rowBytes * batch;
        if (_activations.Length < need)
        {
            _activations = GC.AllocateUninitializedArray<byte>(need, pinned: true);
            _prepared = default;
        }
        _f16Prescaled = w.Type == GgmlType.F16 && !UsesFloatBatch(w, batch);
        if (w.Type == GgmlType.Q4_0 && _offsets.Length < batch * (cols / Q4_0.BlockSize))
        {
            _offsets = new int[batch * (cols / Q4_0.BlockSize)];
            _prepared = default;
        }

        fixed (float* px = x)
        fixed (float* py = y)
        {
            _w = w;
            _batch = batch;
            _activationRowBytes = rowBytes;
            _x = px;
            var prepared = ((nint)px, batch, w.Type, cols, _f16Prescaled);
            if (!inputUnchanged || prepared != _prepared)
            {
                _prepared = default;
                // A prompt's rows are converted in parallel too: done by the calling thread alone, 64 tokens'
                // conversions were a few percent of a prompt step while the other workers waited.
                if (batch >= ParallelActivationRows && _pool.ThreadCount > 1)
                    _pool.For(batch, _activationRows);
                else
                    PrepareActivations(0, batch);
                _prepared = prepared;
            }
            _x = null;
            _y = py;
            // Chunks of 16-row multiples keep every slice of W cache-line aligned and whole Q4_0 group pairs, for every type.
            _pool.ForDynamic(w.Rows, this, grain: 16);
            _y = null;
            _w = null;
        }
    }

    /// <summary>Activation rows [begin, end) to the weight's dot type (and for F16/Q4_0 the per-row extras the kernels use).</summary>
    private void PrepareActivations(int begin, int end)
    {
        var w = _w!;
        int cols = w.Columns;
        int rowBytes = _activationRowBytes;
        for (int t = begin; t < end; t++)
        {
            var row = _activations.AsSpan(t * rowBytes, rowBytes);
            RowKernels.QuantizeActivations(w.Type, new ReadOnlySpan<float>(_x + (long)t * cols, cols), row);
            if (_f16Prescaled)
                F16.PrescaleActivations(MemoryMarshal.Cast<byte, float>(row));
            if (w.Type == GgmlType.Q4_0)
            {
                int blocks = cols / Q4_0.BlockSize;
                Q4_0.ActivationOffsets(row, _offsets.AsSpan(t * blocks, blocks));
            }
        }
    }

    /// <summary>The pool's view of <see cref="PrepareActivations"/>: MatMul itself is the work item of the product.</summary>
    private sealed class ActivationRows(MatMul owner) : IParallelWork
    {
        public void Execute(int begin, int end, int worker) => owner.PrepareActivations(begin, end);
    }

    void IParallelWork.Execute(int begin, int end, int worker)
    {
        var type = _w!.Type;
        if (UsesFloatBatch(_w, _batch))
        {
            FloatBatch(begin, end, worker);
            return;
        }
        if (_f16Prescaled)
        {
            F16Rows(begin, end);
            return;
        }
        int r = begin;
        if (_w.Layout == WeightLayout.Q4_0Interleaved8)
            r = Q4_0Groups(begin, end);
        else if (type == GgmlType.Q4_0)
            r = Q4_0Rows8(begin, end);
        else if (type == GgmlType.Q8_0)
            r = _batch >= 4 ? Q8_0Tiles(begin, end) : Rows4(begin, end, &Q8_0.DotQ8Rows4);
        else if (type is GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K && _batch >= 4)
            r = KQuantTiles(begin, end);
        else if (type == GgmlType.Q4_K && CpuPaths.CanAvx512)
            r = Rows4(begin, end, &Q4_K.DotQ8KRows4);
        OneRowAtATime(r, end);
    }

    private bool UsesFloatBatch(WeightMatrix w, int batch) =>
        w.Type is GgmlType.F16 or GgmlType.F32 && (batch >= 2 || BatchInvariant) && w.Columns % F32.Lanes == 0;

    /// <summary>Whether float batches go through <see cref="SingleAccumulatorGemm"/>'s 512-bit tiles.</summary>
    private bool UsesTiles(WeightMatrix w, int batch) =>
        CpuPaths.PreferAvx512 && batch >= SingleAccumulatorGemm.TileTokens && UsesFloatBatch(w, batch);

    /// <summary>F16 rows one at a time against activations pre-scaled for <see cref="F16.DotPrescaled"/>.</summary>
    private void F16Rows(int begin, int end)
    {
        var w = _w!;
        int rows = w.Rows;
        ReadOnlySpan<float> xs = MemoryMarshal.Cast<byte, float>(_activations.AsSpan(0, _batch * _activationRowBytes));
        int stride = _activationRowBytes / sizeof(float);
        for (int r = begin; r < end; r++)
        {
            var row = w.Row(r);
            for (int t = 0; t < _batch; t++)
                _y[(long)t * rows + r] = F16.DotPrescaled(row, xs.Slice(t * stride, w.Columns));
        }
    }

    /// <summary>
    /// llama.cpp multiplies float batches with tinyBLAS tiles and single rows with ggml_vec_dot; the two sum in
    /// different orders, and float weights are where those last bits show (see F32). An F16 row is widened once
    /// into this worker's scratch and then serves every token of the batch.
    /// </summary>
    private void FloatBatch(int begin, int end, int worker)
    {
        var w = _w!;
        int rows = w.Rows;
        int cols = w.Columns;
        ReadOnlySpan<float> xs = MemoryMarshal.Cast<byte, float>(_activations.AsSpan(0, _batch * _activationRowBytes));
        int stride = _activationRowBytes / sizeof(float);
        if (UsesTiles(w, _batch) && end - begin >= SingleAccumulatorGemm.TileRows)
        {
            int n = end - begin;
            var y = new Span<float>(_y + begin, (_batch - 1) * rows + n);
            var data = new ReadOnlySpan<byte>(w.Data + (long)begin * w.RowBytes, n * w.RowBytes);
            if (w.Type == GgmlType.F16)
                SingleAccumulatorGemm.MultiplyF16(data, w.RowBytes, n, cols, xs, stride, _batch, y, rows, _tileScratch[worker]);
            else
                SingleAccumulatorGemm.MultiplyF32(MemoryMarshal.Cast<byte, float>(data), w.RowBytes / sizeof(float), n, cols, xs, stride, _batch, y, rows, _tileScratch[worker]);
            return;
        }
        Span<float> widened = _rowScratch[worker].AsSpan(0, 4 * cols);
        Span<float> tile = stackalloc float[16];
        int i = begin;
        // Four rows × four tokens per tile while both last; then one row at a time for the rest.
        for (; i + 4 <= end && _batch >= 4; i += 4)
        {
            ReadOnlySpan<float> rows4;
            if (w.Type == GgmlType.F16)
            {
                F16.Dequantize(new ReadOnlySpan<byte>(w.Data + (long)i * w.RowBytes, 4 * w.RowBytes), widened);
                rows4 = widened;
            }
            else
            {
                rows4 = new ReadOnlySpan<float>((float*)(w.Data + (long)i * w.RowBytes), 4 * cols);
            }
            int t = 0;
            for (; t + 4 <= _batch; t += 4)
            {
                F32.DotSingleAccumulator4x4(rows4, cols, cols, xs.Slice(t * stride, 3 * stride + cols), stride, tile);
                for (int j = 0; j < 4; j++)
                {
                    for (int r = 0; r < 4; r++)
                        _y[(long)(t + j) * rows + i + r] = tile[j * 4 + r];
                }
            }
            for (; t < _batch; t++)
            {
                for (int r = 0; r < 4; r++)
                    _y[(long)t * rows + i + r] = F32.DotSingleAccumulator(rows4.Slice(r * cols, cols), xs.Slice(t * stride, cols));
            }
        }
        Span<float> four = tile[..4];
        for (; i < end; i++)
        {
            ReadOnlySpan<float> row;
            if (w.Type == GgmlType.F16)
            {
                F16.Dequantize(w.Row(i), widened[..cols]);
                row = widened[..cols];
            }
            else
            {
                row = MemoryMarshal.Cast<byte, float>(w.Row(i));
            }
            int t = 0;
            for (; t + 4 <= _batch; t += 4)
            {
                F32.DotSingleAccumulator4(row, xs.Slice(t * stride, 3 * stride + cols), stride, four);
                for (int j = 0; j < 4; j++)
                    _y[(long)(t + j) * rows + i] = four[j];
            }
            for (; t < _batch; t++)
                _y[(long)t * rows + i] = F32.DotSingleAccumulator(row, xs.Slice(t * stride, cols));
        }
    }

    /// <summary>Groups of eight rows: 8×8 tiles over the tokens, an 8×4 tile, then the eight-row kernel for the last tokens.</summary>
    private int Q4_0Rows8(int begin, int end)
    {
        var w = _w!;
        int rows = w.Rows;
        int blocks = w.Columns / Q4_0.BlockSize;
        ReadOnlySpan<byte> act = _activations;
        Span<float> eight = stackalloc float[8];
        Span<float> tile = stackalloc float[64];
        int r = begin;
        for (; r + 8 <= end; r += 8)
        {
            var rows8 = new ReadOnlySpan<byte>(w.Data + (long)r * w.RowBytes, 8 * w.RowBytes);
            int t = 0;
            for (; t + 8 <= _batch; t += 8)
            {
                Q4_0.DotQ8Tile8x8(rows8, w.RowBytes, act.Slice(t * _activationRowBytes, 8 * _activationRowBytes), _activationRowBytes,
                    _offsets.AsSpan(t * blocks, 8 * blocks), blocks, tile);
                for (int j = 0; j < 8; j++)
                {
                    for (int i = 0; i < 8; i++)
                        _y[(long)(t + j) * rows + r + i] = tile[j * 8 + i];
                }
            }
            for (; t + 4 <= _batch; t += 4)
            {
                Q4_0.DotQ8Tile8x4(rows8, w.RowBytes, act.Slice(t * _activationRowBytes, 4 * _activationRowBytes), _activationRowBytes,
                    _offsets.AsSpan(t * blocks, 4 * blocks), blocks, tile);
                for (int j = 0; j < 4; j++)
                {
                    for (int i = 0; i < 8; i++)
                        _y[(long)(t + j) * rows + r + i] = tile[j * 8 + i];
                }
            }
            for (; t < _batch; t++)
            {
                Q4_0.DotQ8Rows8(rows8, w.RowBytes, act.Slice(t * _activationRowBytes, _activationRowBytes),
                    _offsets.AsSpan(t * blocks, blocks), eight);
                for (int i = 0; i < 8; i++)
                    _y[(long)t * rows + r + i] = eight[i];
            }
        }
        return r;
    }

    /// <summary>
    /// AVX-512: two interleaved groups (16 rows) at a time, 16 × 8 tiles over the tokens (<see cref="Q4_0x8.DotQ8Pair"/>),
    /// then one tile of the two to seven tokens left, and the group kernel for a last single token, where the pair's scale
    /// gathers cost more than they save (single thread, per token and eight rows from cache: 4.3 against 7.9 ns). One
    /// tile of the rest beats splitting it into 4 + 2 or 4 + 3 (MatMul alone, one thread, a 32768 × 2048 matrix: 6 and 7
    /// tokens 0.70 of the time, 22 and 23 tokens 0.92).
    /// </summary>
    private int Q4_0GroupPairs(int begin, int end)
    {
        var w = _w!;
        int rows = w.Rows;
        int blocks = w.Columns / Q4_0.BlockSize;
        int groupBytes = Q4_0x8.Rows * w.RowBytes;
        ReadOnlySpan<byte> act = _activations;
        Span<float> eight = stackalloc float[8];
        int r = begin;
        fixed (byte* x = _activations)
        fixed (int* offsets = _offsets)
        {
            for (; r + 2 * Q4_0x8.Rows <= end; r += 2 * Q4_0x8.Rows)
            {
                byte* pair = w.Data + (long)r * w.RowBytes;
                int t = 0;
                while (t + 2 <= _batch)
                {
                    int left = _batch - t;
                    int tokens = Math.Min(left, 8);
                    Q4_0x8.DotQ8PairAvx512(pair, groupBytes, x + (long)t * _activationRowBytes, _activationRowBytes,
                        offsets + t * blocks, blocks, blocks, tokens, _y + (long)t * rows + r, rows);
                    t += tokens;
                }
                if (t < _batch)
                {
                    for (int g = 0; g < 2; g++)
                    {
                        Q4_0x8.DotQ8(new ReadOnlySpan<byte>(pair + g * groupBytes, groupBytes), act.Slice(t * _activationRowBytes, _activationRowBytes),
                            _offsets.AsSpan(t * blocks, blocks), eight);
                        eight.CopyTo(new Span<float>(_y + (long)t * rows + r + g * Q4_0x8.Rows, Q4_0x8.Rows));
                    }
                }
            }
        }
        return r;
    }

    /// <summary>
    /// Interleaved groups of eight rows (<see cref="Q4_0x8"/>), after <see cref="Q4_0GroupPairs"/> where AVX-512 takes
    /// pairs: 8×4 tiles over the tokens, then the group kernel for the last tokens. Every chunk of the pool starts on a
    /// 16-row boundary; the rows after the last whole group are plain and left to the caller.
    /// </summary>
    private int Q4_0Groups(int begin, int end)
    {
        var w = _w!;
        int rows = w.Rows;
        int blocks = w.Columns / Q4_0.BlockSize;
        int groupBytes = Q4_0x8.Rows * w.RowBytes;
        ReadOnlySpan<byte> act = _activations;
        Span<float> eight = stackalloc float[8];
        Span<float> tile = stackalloc float[32];
        int r = begin;
        System.Diagnostics.Debug.Assert(begin % Q4_0x8.Rows == 0);
        if (CpuPaths.CanAvx512 && _batch >= 2)
            r = Q4_0GroupPairs(r, end);
        for (; r + Q4_0x8.Rows <= end; r += Q4_0x8.Rows)
        {
            var group = new ReadOnlySpan<byte>(w.Data + (long)r * w.RowBytes, groupBytes);
            int t = 0;
            for (; t + 4 <= _batch; t += 4)
            {
                Q4_0x8.DotQ8Tile4(group, act.Slice(t * _activationRowBytes, 4 * _activationRowBytes), _activationRowBytes,
                    _offsets.AsSpan(t * blocks, 4 * blocks), blocks, tile);
                for (int j = 0; j < 4; j++)
                {
                    for (int i = 0; i < 8; i++)
                        _y[(long)(t + j) * rows + r + i] = tile[j * 8 + i];
                }
            }
            for (; t < _batch; t++)
            {
                Q4_0x8.DotQ8(group, act.Slice(t * _activationRowBytes, _activationRowBytes), _offsets.AsSpan(t * blocks, blocks), eight);
                for (int i = 0; i < 8; i++)
                    _y[(long)t * rows + r + i] = eight[i];
            }
        }
        return r;
    }

    /// <summary>
    /// Groups of four rows: 4×4 tiles over the tokens, then the four-row kernel for the last tokens. As for the K
    /// types, rows go in chunks that fit L1 together with four tokens' activations.
    /// </summary>
    private int Q8_0Tiles(int begin, int end)
    {
        const int chunkRows = 8;
        var w = _w!;
        int rows = w.Rows;
        ReadOnlySpan<byte> act = _activations;
        Span<float> tile = stackalloc float[16];
        Span<float> four = tile[..4];
        int last = begin + (end - begin) / 4 * 4;
        for (int r0 = begin; r0 < last; r0 += chunkRows)
        {
            int r1 = Math.Min(last, r0 + chunkRows);
            int t = 0;
            for (; t + 4 <= _batch; t += 4)
            {
                var x4 = act.Slice(t * _activationRowBytes, 4 * _activationRowBytes);
                for (int r = r0; r < r1; r += 4)
                {
                    Q8_0.DotQ8Tile4x4(new ReadOnlySpan<byte>(w.Data + (long)r * w.RowBytes, 4 * w.RowBytes), w.RowBytes, x4, _activationRowBytes, tile);
                    for (int j = 0; j < 4; j++)
                    {
                        for (int i = 0; i < 4; i++)
                            _y[(long)(t + j) * rows + r + i] = tile[j * 4 + i];
                    }
                }
            }
            for (; t < _batch; t++)
            {
                var x = act.Slice(t * _activationRowBytes, _activationRowBytes);
                for (int r = r0; r < r1; r += 4)
                {
                    Q8_0.DotQ8Rows4(new ReadOnlySpan<byte>(w.Data + (long)r * w.RowBytes, 4 * w.RowBytes), w.RowBytes, x, four);
                    for (int i = 0; i < 4; i++)
                        _y[(long)t * rows + r + i] = four[i];
                }
            }
        }
        return last;
    }

    /// <summary>
    /// K-quant rows one at a time against 1×4 tiles of tokens, then one-row dots for the last tokens. A tile streams
    /// twice as many activation bytes as weight bytes per token, so rows go in chunks small enough for L1 together
    /// with four tokens' activations: each token group is then read from L1 by every row of the chunk, not from L2.
    /// Q6_K batches of 16 tokens or more take eight tokens per tile first (its unpacking then serves twice the tokens).
    /// Below 16 two 1×4 tiles do better in this loop (MatMul alone, one thread, a 32000 × 2048 classifier, min of six
    /// alternating runs: 8 tokens 13.0 against 14.1 ms, 12 tokens 18.6 against 20.1; 64 tokens 87–91 against 94 ms
    /// for 1×4 tiles only), although the kernel alone on cached rows is faster per token at eight.
    /// </summary>
    private int KQuantTiles(int begin, int end)
    {
        const int chunkRows = 8;
        var w = _w!;
        int rows = w.Rows;
        var type = w.Type;
        ReadOnlySpan<byte> act = _activations;
        Span<float> tile = stackalloc float[8];
        for (int r0 = begin; r0 < end; r0 += chunkRows)
        {
            int r1 = Math.Min(end, r0 + chunkRows);
            int t = 0;
            // Q6_K: eight tokens per tile, and six or seven as eight (see DotQ8KTile1x8)
            for (int n; type == GgmlType.Q6_K && _batch >= 16 && (n = Math.Min(8, _batch - t)) >= 6; t += n)
            {
                var x8 = act.Slice(t * _activationRowBytes, n * _activationRowBytes);
                for (int r = r0; r < r1; r++)
                {
                    Q6_K.DotQ8KTile1x8(w.Row(r), x8, _activationRowBytes, n, tile);
                    for (int j = 0; j < n; j++)
                        _y[(long)(t + j) * rows + r] = tile[j];
                }
            }
            for (; t + 4 <= _batch; t += 4)
            {
                var x4 = act.Slice(t * _activationRowBytes, 4 * _activationRowBytes);
                for (int r = r0; r < r1; r++)
                {
                    if (type == GgmlType.Q4_K)
                        Q4_K.DotQ8KTile1x4(w.Row(r), x4, _activationRowBytes, tile);
                    else if (type == GgmlType.Q5_K)
                        Q5_K.DotQ8KTile1x4(w.Row(r), x4, _activationRowBytes, tile);
                    else
                        Q6_K.DotQ8KTile1x4(w.Row(r), x4, _activationRowBytes, tile);
                    for (int j = 0; j < 4; j++)
                        _y[(long)(t + j) * rows + r] = tile[j];
                }
            }
            for (; t < _batch; t++)
            {
                var x = act.Slice(t * _activationRowBytes, _activationRowBytes);
                for (int r = r0; r < r1; r++)
                    _y[(long)t * rows + r] = RowKernels.DotQuantized(type, w.Row(r), x);
            }
        }
        return end;
    }

    /// <summary>
    /// Groups of four rows, each token on its own (decode and small batches), through a four-row kernel: Q8_0's, or
    /// Q4_K's (AVX-512, two rows per register, about half the instructions of four one-row dots); both give every row
    /// the one-row kernel's bits.
    /// </summary>
    private int Rows4(int begin, int end, delegate*<ReadOnlySpan<byte>, int, ReadOnlySpan<byte>, Span<float>, void> rows4Kernel)
    {
        var w = _w!;
        int rows = w.Rows;
        ReadOnlySpan<byte> act = _activations;
        Span<float> four = stackalloc float[4];
        int r = begin;
        for (; r + 4 <= end; r += 4)
        {
            var rows4 = new ReadOnlySpan<byte>(w.Data + (long)r * w.RowBytes, 4 * w.RowBytes);
            for (int t = 0; t < _batch; t++)
            {
                rows4Kernel(rows4, w.RowBytes, act.Slice(t * _activationRowBytes, _activationRowBytes), four);
                for (int i = 0; i < 4; i++)
                    _y[(long)t * rows + r + i] = four[i];
            }
        }
        return r;
    }

    private void OneRowAtATime(int begin, int end)
    {
        var w = _w!;
        int rows = w.Rows;
        ReadOnlySpan<byte> act = _activations;
        for (int r = begin; r < end; r++)
        {
            var row = w.Row(r);
            for (int t = 0; t < _batch; t++)
                _y[(long)t * rows + r] = RowKernels.DotQuantized(w.Type, row, act.Slice(t * _activationRowBytes, _activationRowBytes));
        }
    }
}
