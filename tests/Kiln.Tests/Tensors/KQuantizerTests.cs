using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>
/// The K-quant reference quantizers beyond the llama.cpp files (which pin their bytes): degenerate blocks,
/// independence of super-blocks, and the round-trip error on data unlike the uniform reference weights.
/// </summary>
public class KQuantizerTests
{
    private delegate void Row(ReadOnlySpan<float> src, Span<byte> dst);

    private delegate void Back(ReadOnlySpan<byte> src, Span<float> dst);

    public static TheoryData<GgmlType> Types() => new() { GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K };

    private static (Row Quantize, Back Dequantize, int Bytes) Kernels(GgmlType type) => type switch
    {
        GgmlType.Q2_K => (Q2_K.Quantize, Q2_K.DequantizeScalar, Q2_K.BlockBytes),
        GgmlType.Q3_K => (Q3_K.Quantize, Q3_K.DequantizeScalar, Q3_K.BlockBytes),
        GgmlType.Q4_K => (Q4_K.Quantize, Q4_K.DequantizeScalar, Q4_K.BlockBytes),
        GgmlType.Q5_K => (Q5_K.Quantize, Q5_K.DequantizeScalar, Q5_K.BlockBytes),
        _ => (Q6_K.Quantize, Q6_K.DequantizeScalar, Q6_K.BlockBytes),
    };

    private static float[] RoundTrip(GgmlType type, float[] x)
    {
        var (quantize, dequantize, bytes) = Kernels(type);
        var q = new byte[x.Length / 256 * bytes];
        quantize(x, q);
        var y = new float[x.Length];
        dequantize(q, y);
        return y;
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void ZeroAndTinyBlocksComeBackAsZero(GgmlType type)
    {
        var x = new float[512];
        for (int i = 256; i < 512; i++)
            x[i] = (i % 3 - 1) * 1e-30f; // below ggml's GROUP_MAX_EPS for the symmetric types
        float[] y = RoundTrip(type, x);
        Assert.All(y.AsSpan(0, 256).ToArray(), v => Assert.Equal(0f, v));
        Assert.All(y.AsSpan(256).ToArray(), v => Assert.True(MathF.Abs(v) <= 1e-29f && float.IsFinite(v)));
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void SuperBlocksAreQuantizedIndependently(GgmlType type)
    {
        var rng = new Random(11);
        var x = new float[256 * 3];
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)(rng.NextDouble() - 0.5) * (i < 256 ? 1 : i < 512 ? 100 : 0.01f);
        var (quantize, _, bytes) = Kernels(type);
        var whole = new byte[3 * bytes];
        quantize(x, whole);
        for (int b = 0; b < 3; b++)
        {
            var one = new byte[bytes];
            quantize(x.AsSpan(b * 256, 256), one);
            Assert.True(one.AsSpan().SequenceEqual(whole.AsSpan(b * bytes, bytes)), $"super-block {b}");
        }
    }

    /// <summary>
    /// Gaussian weights with a few 8σ outliers: relative RMS error about 1/(2^b − 1) as on the uniform reference
    /// weights (KQuantLlamaCppFileTests), a little more for the outliers that stretch their sub-block's range.
    /// Measured: Q2_K 0.363, Q3_K 0.203, Q4_K 0.091, Q5_K 0.046, Q6_K 0.025; bounds about 15% above. A wrong
    /// level, scale or bit position gives errors of the order of 1.
    /// </summary>
    [Theory]
    [InlineData(GgmlType.Q2_K, 0.42)]
    [InlineData(GgmlType.Q3_K, 0.23)]
    [InlineData(GgmlType.Q4_K, 0.105)]
    [InlineData(GgmlType.Q5_K, 0.053)]
    [InlineData(GgmlType.Q6_K, 0.029)]
    public void GaussianWeightsWithOutliersRoundTripClosely(GgmlType type, double bound)
    {
        var rng = new Random(5);
        var x = new float[256 * 16];
        for (int i = 0; i < x.Length; i++)
        {
            double g = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
            x[i] = (float)(i % 97 == 0 ? 8 * Math.Sign(g) : g);
        }
        float[] y = RoundTrip(type, x);
        double err = 0, norm = 0;
        for (int i = 0; i < x.Length; i++)
        {
            err += (y[i] - x[i]) * (double)(y[i] - x[i]);
            norm += x[i] * (double)x[i];
        }
        double relative = Math.Sqrt(err / norm);
        Assert.True(relative < bound, $"{type}: relative RMS error {relative:F4}");
    }
}
