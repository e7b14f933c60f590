using Kiln.Compute;
using Kiln.Formats.Gguf;
using Kiln.Tensors;
using Kiln.Tests.Tensors;
using Kiln.Threading;

namespace Kiln.Tests.Compute;

/// <summary>A Q4_0 matrix interleaved in a copied file: rows read back plain, and MatMul gives the one-row bits.</summary>
public sealed class InterleavedWeightMatrixTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-interleave-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A file holding one Q4_0 matrix "w" of random blocks; returns its plain bytes too.</summary>
    private string Write(int rows, int columns, out byte[] plain)
    {
        int blocks = columns / 32;
        plain = KernelTestData.Q4Blocks(rows * blocks, rows + columns);
        var writer = new GgufWriter();
        writer.AddTensor("w", GgmlType.Q4_0, [columns, rows], plain);
        string path = Path.Combine(_dir, $"w-{rows}x{columns}.gguf");
        writer.Write(path);
        return path;
    }

    [Theory]
    [InlineData(43, 96)]
    [InlineData(8, 32)]
    [InlineData(70, 2080)]
    public void RowsReadBackPlainAndTheFileRefusesTheRearrangedTensor(int rows, int columns)
    {
        string path = Write(rows, columns, out byte[] plain);
        using var file = GgufFile.Open(path, GgufLoadMode.Copy);
        var w = WeightMatrix.FromGguf(file, "w", columns, rows, interleave: true);
        if (!CpuPaths.CanAvx2)
        {
            // only the AVX2 kernels read the interleaved layout, so elsewhere nothing is rearranged
            Assert.Equal(WeightLayout.Rows, w.Layout);
            return;
        }
        Assert.Equal(WeightLayout.Q4_0Interleaved8, w.Layout);
        Assert.Equal(rows / 8 * 8, w.InterleavedRows);
        var row = new byte[w.RowBytes];
        var floats = new float[columns];
        var expected = new float[columns];
        for (int r = 0; r < rows; r++)
        {
            var p = plain.AsSpan(r * w.RowBytes, w.RowBytes);
            w.CopyRow(r, row);
            Assert.Equal(p.ToArray(), row);
            w.DequantizeRow(r, floats);
            Q4_0.DequantizeScalar(p, expected);
            Assert.Equal(expected, floats);
            if (r < w.InterleavedRows)
                Assert.Throws<InvalidOperationException>(() => w.Row(r).Length);
            else
                Assert.Equal(p.ToArray(), w.Row(r).ToArray());
        }
        Assert.Throws<InvalidOperationException>(() => file.GetTensorBytes(file.GetTensor("w")).Length);
        // A second binding over the same file finds the bytes interleaved already and must not shuffle them again.
        var again = WeightMatrix.FromGguf(file, "w", columns, rows, interleave: true);
        again.CopyRow(0, row);
        Assert.Equal(plain.AsSpan(0, w.RowBytes).ToArray(), row);
    }

    [Fact]
    public void AMappedFileIsNeverInterleaved()
    {
        string path = Write(16, 64, out _);
        using var file = GgufFile.Open(path, GgufLoadMode.Map);
        Assert.Equal(WeightLayout.Rows, WeightMatrix.FromGguf(file, "w", 64, 16, interleave: true).Layout);
    }

    [Theory]
    [InlineData(43, 96, 1)]
    [InlineData(43, 96, 5)]
    [InlineData(70, 2080, 1)]
    [InlineData(70, 2080, 4)]
    [InlineData(70, 2080, 7)]
    [InlineData(70, 2080, 2)]  // AVX-512: pair tiles of every token count from 2 to 8, one token alone by groups
    [InlineData(70, 2080, 3)]
    [InlineData(70, 2080, 6)]
    [InlineData(70, 2080, 13)]
    [InlineData(70, 2080, 17)]
    [InlineData(83, 256, 22)]
    [InlineData(83, 256, 8)]   // an odd number of groups: the last group of each worker's slice alone
    [InlineData(83, 256, 12)]
    public void MatMulGivesEveryOutputTheScalarOneRowBits(int rows, int columns, int batch)
    {
        string path = Write(rows, columns, out byte[] plain);
        using var file = GgufFile.Open(path, GgufLoadMode.Copy);
        var w = WeightMatrix.FromGguf(file, "w", columns, rows, interleave: true);
        float[] x = KernelTestData.Floats(batch * columns, rows + batch, 2f);
        var y = new float[batch * rows];
        using (var pool = new WorkerPool(2))
            new MatMul(pool).Run(w, x, batch, y);
        var xq = new byte[columns / 32 * Q8_0.BlockBytes];
        for (int t = 0; t < batch; t++)
        {
            Q8_0.QuantizeActivationsScalar(x.AsSpan(t * columns, columns), xq);
            for (int r = 0; r < rows; r++)
            {
                float expected = Q4_0.DotQ8Scalar(plain.AsSpan(r * w.RowBytes, w.RowBytes), xq);
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(y[t * rows + r]));
            }
        }
    }
}
