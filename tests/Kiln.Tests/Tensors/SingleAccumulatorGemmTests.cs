using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>
/// Every output of the tiled products against the scalar single-accumulator dot of its row and token: shapes whose
/// rows and tokens fill no whole tile, columns that end inside a cache chunk, strides with gaps that must stay untouched.
/// </summary>
public unsafe class SingleAccumulatorGemmTests
{
    public static TheoryData<int, int, int> Shapes() => new()
    {
        { 8, 6, 8 },
        { 13, 7, 520 },
        { 19, 13, SingleAccumulatorGemm.ChunkColumns * 2 + 8 },
        { 16, 64, 2048 + 24 },
        { 9, 11, 1536 },
        { 3, 2, 16 },
        { 8, 5, 64 },
        { 7, 6, 64 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void F16ProductHasTheScalarDotBits(int rows, int tokens, int n)
    {
        int rowBytes = 2 * n + 6, xStride = n + 3, yStride = rows + 2;
        byte[] w = Halves(rows, rowBytes, n, 700 + rows);
        float[] x = KernelTestData.Floats((tokens - 1) * xStride + n, 710 + tokens, 2f);
        var scratch = new float[SingleAccumulatorGemm.ScratchFloats(tokens)];
        var widened = new float[n];
        var paths = new List<(string, float[])> { ("dispatch", Output(tokens, yStride)), ("scalar", Output(tokens, yStride)) };
        SingleAccumulatorGemm.MultiplyF16(w, rowBytes, rows, n, x, xStride, tokens, paths[0].Item2, yStride, scratch);
        SingleAccumulatorGemm.MultiplyF16Scalar(w, rowBytes, rows, n, x, xStride, tokens, paths[1].Item2, yStride);
        if (KernelTestData.Avx512 && rows >= SingleAccumulatorGemm.TileRows && tokens >= SingleAccumulatorGemm.TileTokens)
        {
            var avx512 = Output(tokens, yStride);
            fixed (byte* pw = w)
            fixed (float* px = x, py = avx512, ps = scratch)
                SingleAccumulatorGemm.MultiplyAvx512(pw, rowBytes, halves: true, rows, n, px, xStride, tokens, py, yStride, ps);
            paths.Add(("avx512", avx512));
        }
        for (int r = 0; r < rows; r++)
        {
            F16.DequantizeScalar(w.AsSpan(r * rowBytes, 2 * n), widened);
            for (int t = 0; t < tokens; t++)
            {
                float expected = F32.DotSingleAccumulatorScalar(widened, x.AsSpan(t * xStride, n));
                foreach (var (path, y) in paths)
                    AssertBits(expected, y[t * yStride + r], $"F16 {path}, y[{t}, {r}]");
            }
        }
        foreach (var (path, y) in paths)
            AssertGapsUntouched(y, rows, tokens, yStride, path);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void F32ProductHasTheScalarDotBits(int rows, int tokens, int n)
    {
        int rowStride = n + 5, xStride = n + 3, yStride = rows + 1;
        float[] w = KernelTestData.Floats((rows - 1) * rowStride + n, 720 + rows, 0.5f);
        float[] x = KernelTestData.Floats((tokens - 1) * xStride + n, 730 + tokens, 2f);
        var scratch = new float[SingleAccumulatorGemm.ScratchFloats(tokens)];
        var paths = new List<(string, float[])> { ("dispatch", Output(tokens, yStride)), ("scalar", Output(tokens, yStride)) };
        SingleAccumulatorGemm.MultiplyF32(w, rowStride, rows, n, x, xStride, tokens, paths[0].Item2, yStride, scratch);
        SingleAccumulatorGemm.MultiplyF32Scalar(w, rowStride, rows, n, x, xStride, tokens, paths[1].Item2, yStride);
        if (KernelTestData.Avx512 && rows >= SingleAccumulatorGemm.TileRows && tokens >= SingleAccumulatorGemm.TileTokens)
        {
            var avx512 = Output(tokens, yStride);
            fixed (float* pw = w, px = x, py = avx512, ps = scratch)
                SingleAccumulatorGemm.MultiplyAvx512((byte*)pw, rowStride * sizeof(float), halves: false, rows, n, px, xStride, tokens, py, yStride, ps);
            paths.Add(("avx512", avx512));
        }
        for (int r = 0; r < rows; r++)
        {
            for (int t = 0; t < tokens; t++)
            {
                float expected = F32.DotSingleAccumulatorScalar(w.AsSpan(r * rowStride, n), x.AsSpan(t * xStride, n));
                foreach (var (path, y) in paths)
                    AssertBits(expected, y[t * yStride + r], $"F32 {path}, y[{t}, {r}]");
            }
        }
        foreach (var (path, y) in paths)
            AssertGapsUntouched(y, rows, tokens, yStride, path);
    }

    [Fact]
    public void BadShapesThrow()
    {
        var w = new float[8 * 16];
        var x = new float[6 * 16];
        var y = new float[6 * 8];
        var scratch = new float[SingleAccumulatorGemm.ScratchFloats(6)];
        Assert.Throws<ArgumentException>(() => SingleAccumulatorGemm.MultiplyF32(w, 12, 8, 12, x, 12, 6, y, 8, scratch));
        Assert.Throws<ArgumentException>(() => SingleAccumulatorGemm.MultiplyF32(w, 16, 8, 16, x, 16, 7, y, 8, scratch));
        Assert.Throws<ArgumentException>(() => SingleAccumulatorGemm.MultiplyF32(w, 16, 8, 16, x, 16, 6, y, 8, scratch.AsSpan(1)));
        Assert.Throws<ArgumentException>(() => SingleAccumulatorGemm.MultiplyF16(new byte[8 * 32 - 1], 32, 8, 16, x, 16, 6, y, 8, scratch));
    }

    private static byte[] Halves(int rows, int rowBytes, int n, int seed)
    {
        var w = new byte[(rows - 1) * rowBytes + 2 * n];
        for (int r = 0; r < rows; r++)
            F16.QuantizeScalar(KernelTestData.Floats(n, seed + r, 0.5f), w.AsSpan(r * rowBytes, 2 * n));
        return w;
    }

    private static float[] Output(int tokens, int yStride)
    {
        var y = new float[tokens * yStride];
        Array.Fill(y, float.NaN);
        return y;
    }

    private static void AssertGapsUntouched(float[] y, int rows, int tokens, int yStride, string path)
    {
        for (int t = 0; t < tokens; t++)
        {
            for (int r = rows; r < yStride; r++)
                Assert.True(float.IsNaN(y[t * yStride + r]), $"{path} wrote y[{t}, {r}] outside the product");
        }
    }

    private static void AssertBits(float expected, float actual, string what) =>
        Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
            $"{what} is {actual:R}, the scalar single-accumulator dot {expected:R}");
}
