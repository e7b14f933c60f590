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
    /// inputUnchanged reuses the previous Run's conversion of the same span for a weight of the same type and width
    /// (a layer's query, key and value share one input): the results are those of a fresh conversion, the reuse is
    /// real (values changed behind the promise are not seen), and a different span, batch or type is converted anew.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q4_0, 1)]
    [InlineData(GgmlType.Q4_0, 9)]
    [InlineData(GgmlType.Q6_K, 5)]
    public void AnUnchangedInputIsConvertedOnceForWeightsOfOneType(GgmlType type, int batch)
    {
        const int columns = 512;
        WeightMatrix Make(GgmlType t, int rows, int seed, out byte[] bytes)
        {
            var (quantize, _) = For(t);
            int rowBytes = (int)GgmlTypeTraits.RowBytes(t, columns);
            bytes = GC.AllocateArray<byte>(rows * rowBytes, pinned: true);
            for (int r = 0; r < rows; r++)
                quantize(Kiln.Tests.Tensors.KernelTestData.Floats(columns, seed + r, 0.05f), bytes.AsSpan(r * rowBytes, rowBytes));
            fixed (byte* p = bytes)
                return new WeightMatrix("w" + seed, t, rows, columns, p);
        }
        var a = Make(type, 40, 100, out var aBytes);
        var b = Make(type, 24, 200, out var bBytes);
        var c = Make(GgmlType.Q8_0, 24, 300, out var cBytes);
        using var pool = new WorkerPool(2);
        var x = Kiln.Tests.Tensors.KernelTestData.Floats(batch * columns, 7, 2f);
        var other = Kiln.Tests.Tensors.KernelTestData.Floats(batch * columns, 8, 2f);

        float[] Fresh(WeightMatrix w, float[] input)
        {
            var y = new float[batch * w.Rows];
            new MatMul(pool).Run(w, input, batch, y);
            return y;
        }

        var matmul = new MatMul(pool);
        var ya = new float[batch * a.Rows];
        var yb = new float[batch * b.Rows];
        matmul.Run(a, x, batch, ya);
        matmul.Run(b, x, batch, yb, inputUnchanged: true);
        Assert.Equal(Fresh(a, x), ya);
        Assert.Equal(Fresh(b, x), yb);

        // The promise is taken at its word: the conversion of the old values serves.
        var saved = (float[])x.Clone();
        other.CopyTo(x, 0);
        matmul.Run(b, x, batch, yb, inputUnchanged: true);
        Assert.Equal(Fresh(b, saved), yb);

        // Without the promise, or for another span, the input is converted again.
        matmul.Run(b, x, batch, yb);
        Assert.Equal(Fresh(b, other), yb);
        var copy = (float[])saved.Clone();
        matmul.Run(b, copy, batch, yb, inputUnchanged: true);
        Assert.Equal(Fresh(b, saved), yb);

        // A smaller batch of the same span is a different conversion too.
        if (batch > 1)
        {
            var y1 = new float[b.Rows];
            matmul.Run(b, copy.AsSpan(0, columns), 1, y1, inputUnchanged: true);
            Assert.Equal(Fresh1(b, copy), y1);
        }
        // A weight of another type needs its own conversion.
        var yc = new float[batch * c.Rows];
        matmul.Run(b, copy, batch, yb);
        matmul.Run(c, copy, batch, yc, inputUnchanged: true);
        Assert.Equal(Fresh(c, copy), yc);
        GC.KeepAlive(aBytes);
        GC.KeepAlive(bBytes);
        GC.KeepAlive(cBytes);

        float[] Fresh1(WeightMatrix w, float[] input)
        {
            var y = new float[w.Rows];
            new MatMul(pool).Run(w, input.AsSpan(0, columns), 1, y);
            return y;
        }
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
