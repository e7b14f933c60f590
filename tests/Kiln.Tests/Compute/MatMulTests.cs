using Kiln.Compute;
using Kiln.Tensors;
using Kiln.Threading;

namespace Kiln.Tests.Compute;

/// <summary>
/// Whole quantized products against the scalar one-row kernels: whatever tiles MatMul uses for a batch, every
/// output must have the bits of the type's scalar dot of that weight row with that token's quantized activations.
/// Row counts that are no multiple of any tile height and batches with every remainder of the token tiles.
/// </summary>
public unsafe class MatMulTests
{
    private delegate void Quantizer(ReadOnlySpan<float> src, Span<byte> dst);
    private delegate float ScalarDot(ReadOnlySpan<byte> w, ReadOnlySpan<byte> xq);

    private static (Quantizer Quantize, ScalarDot Dot) For(GgmlType type) => type switch
    {
        GgmlType.Q4_0 => (Q4_0.Quantize, Q4_0.DotQ8Scalar),
        GgmlType.Q8_0 => (Q8_0.Quantize, Q8_0.DotQ8Scalar),
        GgmlType.Q4_K => (Q4_K.Quantize, Q4_K.DotQ8KScalar),
        GgmlType.Q5_K => (Q5_K.Quantize, Q5_K.DotQ8KScalar),
        GgmlType.Q6_K => (Q6_K.Quantize, Q6_K.DotQ8KScalar),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public static TheoryData<GgmlType, int, int> Cases()
    {
        var data = new TheoryData<GgmlType, int, int>();
        foreach (var type in new[] { GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K })
            foreach (int threads in new[] { 1, 2 })
                data.Add(type, 37, threads);
        data.Add(GgmlType.Q4_K, 3, 1);
        data.Add(GgmlType.Q6_K, 19, 2);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryOutputHasTheScalarOneRowBits(GgmlType type, int rows, int threads)
    {
        const int columns = 512;
        var (quantize, dot) = For(type);
        int rowBytes = (int)GgmlTypeTraits.RowBytes(type, columns);
        var weights = GC.AllocateArray<byte>(rows * rowBytes, pinned: true);
        for (int r = 0; r < rows; r++)
            quantize(Kiln.Tests.Tensors.KernelTestData.Floats(columns, 500 + r, 0.05f), weights.AsSpan(r * rowBytes, rowBytes));
        WeightMatrix w;
        fixed (byte* p = weights)
            w = new WeightMatrix("w", type, rows, columns, p);
        using var pool = new WorkerPool(threads);
        AssertOneRowBits(new MatMul(pool), w, weights, dot, [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 16, 22], seed: 900, scale: 2f, $"{type}, {threads} threads");
    }

    /// <summary>
    /// Runs <paramref name="w"/> (whose bytes are <paramref name="weights"/>) on random batches and asserts every output
    /// has the bits of <paramref name="dot"/> of its row with that token's quantized activations.
    /// </summary>
    private static void AssertOneRowBits(MatMul matmul, WeightMatrix w, byte[] weights, ScalarDot dot, int[] batches, int seed, float scale, string label)
    {
        int rows = w.Rows, columns = w.Columns, rowBytes = w.RowBytes;
        var xq = new byte[(int)RowKernels.ActivationBytes(w.Type, columns)];
        foreach (int batch in batches)
        {
            float[] x = Kiln.Tests.Tensors.KernelTestData.Floats(batch * columns, seed + batch, scale);
            var y = new float[batch * rows];
            matmul.Run(w, x, batch, y);
            for (int t = 0; t < batch; t++)
            {
                RowKernels.QuantizeActivations(w.Type, x.AsSpan(t * columns, columns), xq);
                for (int r = 0; r < rows; r++)
                {
                    float expected = dot(weights.AsSpan(r * rowBytes, rowBytes), xq);
                    float actual = y[t * rows + r];
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
                        $"{label}, batch {batch}: y[{t}, {r}] is {actual:R}, the one-row scalar dot {expected:R}");
                }
            }
        }
        GC.KeepAlive(weights);
    }
    /// <summary>
    /// Float weights in batches (tinyBLAS's order, also for one row under <see cref="MatMul.BatchInvariant"/>): every
    /// output has the bits of the scalar single-accumulator dot, whichever tiles (512-bit or 4 × 4) cover it; F16
    /// activations are the F16-rounded floats. 37 rows and 1032 columns fill no whole tile or cache chunk.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.F16, 1)]
    [InlineData(GgmlType.F16, 2)]
    [InlineData(GgmlType.F32, 1)]
    [InlineData(GgmlType.F32, 2)]
    public void FloatBatchesHaveTheScalarSingleAccumulatorBits(GgmlType type, int threads)
    {
        const int rows = 37, columns = 1032;
        int rowBytes = (int)GgmlTypeTraits.RowBytes(type, columns);
        var weights = GC.AllocateArray<byte>(rows * rowBytes, pinned: true);
        var widened = new float[rows * columns];
        for (int r = 0; r < rows; r++)
        {
            float[] row = Kiln.Tests.Tensors.KernelTestData.Floats(columns, 600 + r, 0.05f);
            if (type == GgmlType.F16)
            {
                F16.QuantizeScalar(row, weights.AsSpan(r * rowBytes, rowBytes));
                F16.DequantizeScalar(weights.AsSpan(r * rowBytes, rowBytes), widened.AsSpan(r * columns, columns));
            }
            else
            {
                row.CopyTo(widened, r * columns);
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(row.AsSpan()).CopyTo(weights.AsSpan(r * rowBytes));
            }
        }
        WeightMatrix w;
        fixed (byte* p = weights)
            w = new WeightMatrix("w", type, rows, columns, p);
        using var pool = new WorkerPool(threads);
        var matmul = new MatMul(pool) { BatchInvariant = true };
        var xr = new float[columns];
        foreach (int batch in new[] { 1, 3, 7, 64 })
        {
            float[] x = Kiln.Tests.Tensors.KernelTestData.Floats(batch * columns, 950 + batch, 2f);
            var y = new float[batch * rows];
            matmul.Run(w, x, batch, y);
            for (int t = 0; t < batch; t++)
            {
                if (type == GgmlType.F16)
                {
                    for (int i = 0; i < columns; i++)
                        xr[i] = (float)(Half)x[t * columns + i];
                }
                else
                {
                    x.AsSpan(t * columns, columns).CopyTo(xr);
                }
                for (int r = 0; r < rows; r++)
                {
                    float expected = F32.DotSingleAccumulatorScalar(widened.AsSpan(r * columns, columns), xr);
                    float actual = y[t * rows + r];
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
                        $"{type}, batch {batch}, {threads} threads: y[{t}, {r}] is {actual:R}, the scalar single-accumulator dot {expected:R}");
                }
            }
        }
        GC.KeepAlive(weights);
    }

    public static TheoryData<GgmlType, int, int, int> DecodeCases()
    {
        var data = new TheoryData<GgmlType, int, int, int>();
        foreach (var type in new[] { GgmlType.Q4_K, GgmlType.Q6_K })
            foreach (int rows in new[] { 43, 70 })
                foreach (int columns in new[] { 256, 2048 })
                    data.Add(type, rows, columns, rows == 70 ? 2 : 1);
        return data;
    }

    /// <summary>
    /// Single tokens and small batches of K-quants, where MatMul takes rows four at a time (AVX-512): rows that are
    /// no multiple of four, in slices of two threads, random blocks, each output against the scalar one-row dot.
    /// </summary>
    [Theory]
    [MemberData(nameof(DecodeCases))]
    public void SmallBatchesOfKQuantsHaveTheScalarOneRowBits(GgmlType type, int rows, int columns, int threads)
    {
        var (_, dot) = For(type);
        byte[] random = Kiln.Tests.Tensors.KQuantReference.RandomBlocks(type, rows * columns / 256, 7 * rows + columns);
        var weights = GC.AllocateArray<byte>(random.Length, pinned: true);
        random.CopyTo(weights, 0);
        WeightMatrix w;
        fixed (byte* p = weights)
            w = new WeightMatrix("w", type, rows, columns, p);
        using var pool = new WorkerPool(threads);
        AssertOneRowBits(new MatMul(pool), w, weights, dot, [1, 2, 3, 5], seed: 300, scale: 3f, $"{type}, {rows}×{columns}, {threads} threads");
    }
}
