using Kiln.Quantization;
using Kiln.Tensors;

namespace Kiln.Tests.Quantization;

/// <summary>
/// The imatrix variants of the quantizers: on random rows with random (log-normal, widely spread) column
/// importance, the importance-weighted rounding error Σ w_i (x_i − q_i)² over many rows is below the reference
/// quantizer's (every type llama.cpp weighs); and an empty importance gives the reference bytes.
/// </summary>
public class ImportanceWeightedQuantizerTests
{
    public static TheoryData<GgmlType> WeightedTypes() =>
        [GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K];

    private static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    [Theory]
    [MemberData(nameof(WeightedTypes))]
    public void WeightedErrorIsBelowTheReferenceQuantizers(GgmlType type)
    {
        const int n = 512, rows = 64;
        var random = new Random(17 + (int)type);
        var importance = new float[n];
        for (int i = 0; i < n; i++)
            importance[i] = (float)Math.Exp(2 * Gaussian(random));
        int rowBytes = (int)GgmlTypeTraits.RowBytes(type, n);
        var plain = new byte[rowBytes];
        var weighted = new byte[rowBytes];
        var back = new float[n];
        double plainError = 0, weightedError = 0;
        for (int r = 0; r < rows; r++)
        {
            var x = Enumerable.Range(0, n).Select(_ => (float)Gaussian(random)).ToArray();
            RowQuantizer.Quantize(type, x, plain);
            RowQuantizer.Quantize(type, x, weighted, importance);
            plainError += Error(type, plain, x, importance, back);
            weightedError += Error(type, weighted, x, importance, back);

            RowQuantizer.Quantize(type, x, weighted, ReadOnlySpan<float>.Empty);
            Assert.Equal(plain, weighted);
        }
        Assert.True(weightedError < 0.95 * plainError, $"{GgmlTypeTraits.Name(type)}: weighted {weightedError:G4} vs reference {plainError:G4}");
    }

    private static double Error(GgmlType type, byte[] q, float[] x, float[] w, float[] back)
    {
        RowKernels.Dequantize(type, q, back);
        double e = 0;
        for (int i = 0; i < x.Length; i++)
            e += w[i] * Math.Pow(x[i] - back[i], 2);
        return e;
    }

    /// <summary>make_qp_quants on values a uniform scale fits exactly: levels are the values' multiples.</summary>
    [Fact]
    public void NonNegativeScaleFitRecoversAnExactGrid()
    {
        float[] x = [0.5f, 1.5f, 3f, 31.5f, 0f, 10f, 20f, 7.5f];
        var levels = new byte[8];
        float scale = KQuantSearch.NonNegativeWeighted(63, x, levels, [1, 1, 1, 1, 1, 1, 1, 1]);
        Assert.Equal(0.5f, scale, 5);
        Assert.Equal(new byte[] { 1, 3, 6, 63, 0, 20, 40, 15 }, levels);
    }
}
