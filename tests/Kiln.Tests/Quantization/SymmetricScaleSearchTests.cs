using Kiln.Quantization;
using Kiln.Tensors;

namespace Kiln.Tests.Quantization;

/// <summary>
/// The weighted scale search against ggml's own Q4_0 block (quantize_row_q4_0_ref's bytes, decoded): never a larger
/// weighted error on any block, and clearly smaller on blocks with a loud value and uneven weights.
/// </summary>
public class SymmetricScaleSearchTests
{
    private static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    [Fact]
    public void NeverWorseThanTheReferenceQ4_0Block()
    {
        var random = new Random(3);
        var x = new float[32];
        var weights = new float[32];
        var block = new byte[18];
        var decoded = new float[32];
        double searchedTotal = 0, referenceTotal = 0;
        for (int trial = 0; trial < 500; trial++)
        {
            double spread = Math.Exp(random.NextDouble() * 8 - 4);
            for (int j = 0; j < 32; j++)
            {
                // heavy tails: a few loud values per block, as trained weights have
                x[j] = (float)(spread * Gaussian(random) * (random.NextDouble() < 0.05 ? 6 : 1));
                weights[j] = (float)Math.Exp(2 * Gaussian(random));
            }
            Q4_0.QuantizeScalar(x, block);
            Q4_0.DequantizeScalar(block, decoded);
            double reference = 0;
            for (int j = 0; j < 32; j++)
                reference += weights[j] * Math.Pow(x[j] - decoded[j], 2);

            float d = SymmetricScaleSearch.Find(x, weights, 8, 7);
            Assert.Equal(d, (float)(Half)d);
            // the error of the block the searched scale makes: nearest code per value, decoded as ggml does
            double searched = 0;
            for (int j = 0; j < 32; j++)
            {
                int code = Math.Clamp((int)Math.Round(x[j] / d, MidpointRounding.ToEven), -8, 7);
                searched += weights[j] * Math.Pow(x[j] - d * code, 2);
            }
            Assert.Equal(searched, SymmetricScaleSearch.Error(x, weights, d, 8, 7), 1e-9 * (1 + searched));
            Assert.True(searched <= reference * (1 + 1e-9), $"trial {trial}: searched {searched:G6} > reference {reference:G6}");
            searchedTotal += searched;
            referenceTotal += reference;
        }
        Assert.True(searchedTotal < 0.9 * referenceTotal, $"searched {searchedTotal:G4} vs reference {referenceTotal:G4}");
    }

    [Fact]
    public void ZeroBlockAndBadArguments()
    {
        var zeros = new float[32];
        var ones = Enumerable.Repeat(1f, 32).ToArray();
        Assert.Equal(0f, SymmetricScaleSearch.Find(zeros, ones, 8, 7));
        Assert.Throws<ArgumentException>(() => SymmetricScaleSearch.Find(zeros, new float[31], 8, 7));
        Assert.Throws<ArgumentOutOfRangeException>(() => SymmetricScaleSearch.Find(zeros, ones, 0, 7));
    }
}
