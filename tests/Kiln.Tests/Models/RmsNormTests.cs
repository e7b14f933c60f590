using Kiln.Models.Llama;

namespace Kiln.Tests.Models;

public class RmsNormTests
{
    /// <summary>ggml_rms_norm then ggml_mul, written out: squares summed in one double chain, two float roundings.</summary>
    private static float[] Reference(float[] x, float[] weight, float eps)
    {
        double sum = 0;
        foreach (float v in x)
            sum += (double)(v * v);
        float scale = 1f / MathF.Sqrt((float)(sum / x.Length) + eps);
        return x.Select((v, i) => (v * scale) * weight[i]).ToArray();
    }

    [Theory]
    [InlineData(1, 64)]
    [InlineData(3, 65)]
    [InlineData(4, 2048)]
    [InlineData(5, 17)]
    [InlineData(8, 288)]
    [InlineData(11, 4096)]
    public void ApplyRowsGivesEveryRowTheOneRowBits(int rows, int dim)
    {
        var rng = new Random(rows * 1000 + dim);
        var x = new float[rows * dim];
        var weight = new float[dim];
        for (int i = 0; i < x.Length; i++)
            x[i] = (rng.NextSingle() - 0.5f) * (1 + i % 7) * 3;
        for (int i = 0; i < dim; i++)
            weight[i] = rng.NextSingle() * 2 - 0.5f;
        var batched = new float[rows * dim + 5];
        RmsNorm.ApplyRows(x, rows, weight, 1e-5f, batched);
        for (int r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * dim, dim).ToArray();
            var one = new float[dim];
            RmsNorm.Apply(row, weight, 1e-5f, one);
            Assert.Equal(one, batched.AsSpan(r * dim, dim).ToArray());
            Assert.Equal(Reference(row, weight, 1e-5f), one);
        }
        Assert.All(batched.AsSpan(rows * dim).ToArray(), v => Assert.Equal(0f, v));
    }
}
