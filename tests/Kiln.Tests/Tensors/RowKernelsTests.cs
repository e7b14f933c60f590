using System.Runtime.InteropServices;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

public class RowKernelsTests
{
    public static TheoryData<GgmlType> ComputeTypes() =>
        new(GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0,
            GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1);

    /// <summary>A row of the type made from known floats, plus those floats as the type represents them.</summary>
    private static (byte[] Row, double[] Values) MakeRow(GgmlType type, int n, int seed)
    {
        float[] f = KernelTestData.Floats(n, seed);
        var row = new byte[GgmlTypeTraits.RowBytes(type, n)];
        switch (type)
        {
            case GgmlType.F32: MemoryMarshal.AsBytes(f.AsSpan()).CopyTo(row); return (row, KernelTestData.Widen(f));
            case GgmlType.F16: F16.QuantizeScalar(f, row); break;
            case GgmlType.BF16: BF16.QuantizeScalar(f, row); break;
            case GgmlType.Q8_0: Q8_0.QuantizeScalar(f, row); return (row, KernelTestData.DecodeQ8(row));
            case GgmlType.Q4_0: Q4_0.QuantizeScalar(f, row); return (row, KernelTestData.DecodeQ4(row));
            case GgmlType.Q4_1: Q4_1.Quantize(f, row); return (row, LegacyQuantTestData.DecodeQ4_1(row));
            case GgmlType.Q5_0: Q5_0.Quantize(f, row); return (row, LegacyQuantTestData.DecodeQ5_0(row));
            case GgmlType.Q5_1: Q5_1.Quantize(f, row); return (row, LegacyQuantTestData.DecodeQ5_1(row));
        }
        var back = new float[n];
        if (type == GgmlType.F16) F16.DequantizeScalar(row, back); else BF16.DequantizeScalar(row, back);
        return (row, KernelTestData.Widen(back));
    }

    [Theory]
    [MemberData(nameof(ComputeTypes))]
    public void DequantizeAndDotFollowTheType(GgmlType type)
    {
        const int n = 256;
        (byte[] row, double[] values) = MakeRow(type, n, 7);
        Assert.True(RowKernels.Supports(type));

        var dst = new float[n];
        RowKernels.Dequantize(type, row, dst);
        for (int i = 0; i < n; i++)
            Assert.Equal((float)values[i], dst[i]);

        float[] x = KernelTestData.Floats(n, 8);
        KernelTestData.AssertDot(values, KernelTestData.Widen(x), RowKernels.Dot(type, row, x), type.ToString());
    }

    [Theory]
    [InlineData(GgmlType.F32, GgmlType.F32, 4096 * 4)]
    [InlineData(GgmlType.F16, GgmlType.F32, 4096 * 4)]
    [InlineData(GgmlType.BF16, GgmlType.BF16, 4096 * 2)]
    [InlineData(GgmlType.Q8_0, GgmlType.Q8_0, 4096 / 32 * 34)]
    [InlineData(GgmlType.Q4_0, GgmlType.Q8_0, 4096 / 32 * 34)]
    [InlineData(GgmlType.Q4_1, GgmlType.Q8_1, 4096 / 32 * 36)]
    [InlineData(GgmlType.Q5_0, GgmlType.Q8_0, 4096 / 32 * 34)]
    [InlineData(GgmlType.Q5_1, GgmlType.Q8_1, 4096 / 32 * 36)]
    [InlineData(GgmlType.Q2_K, GgmlType.Q8_K, 4096 / 256 * 292)]
    [InlineData(GgmlType.Q3_K, GgmlType.Q8_K, 4096 / 256 * 292)]
    [InlineData(GgmlType.Q4_K, GgmlType.Q8_K, 4096 / 256 * 292)]
    [InlineData(GgmlType.Q5_K, GgmlType.Q8_K, 4096 / 256 * 292)]
    [InlineData(GgmlType.Q6_K, GgmlType.Q8_K, 4096 / 256 * 292)]
    public void ActivationTypesFollowLlamaCpp(GgmlType weight, GgmlType activation, long bytes)
    {
        Assert.Equal(activation, RowKernels.ActivationType(weight));
        Assert.Equal(bytes, RowKernels.ActivationBytes(weight, 4096));
    }

    [Theory]
    [MemberData(nameof(ComputeTypes))]
    public void QuantizedPathAgreesWithFloatPath(GgmlType type)
    {
        const int n = 512;
        (byte[] row, double[] values) = MakeRow(type, n, 17);
        float[] x = KernelTestData.Floats(n, 18, 2f);
        var xq = new byte[RowKernels.ActivationBytes(type, n)];
        RowKernels.QuantizeActivations(type, x, xq);

        float quantized = RowKernels.DotQuantized(type, row, xq);
        float full = RowKernels.Dot(type, row, x);
        // the activations lose at most: nothing (F32), 2^-11 relative (F16), 2^-8 relative (BF16), and
        // 0.562 of a Q8_0 step of their block (Q8_0 activations); Q8_1 adds the rounding of its sum field
        double bound = 0, magnitude = 0;
        if (RowKernels.ActivationType(type) == GgmlType.Q8_1)
            bound = LegacyQuantTestData.Q8_1ActivationBound(values, xq, row, GgmlTypeTraits.BlockBytes(type), x, out magnitude);
        else
        {
            for (int i = 0; i < n; i++)
            {
                double err = RowKernels.ActivationType(type) switch
                {
                    GgmlType.F32 => 0,
                    GgmlType.F16 => Math.Abs(x[i]) / 2048,
                    GgmlType.BF16 => Math.Abs(x[i]) / 256,
                    _ => KernelTestData.HalfAt(xq.AsSpan(i / 32 * 34)) * (1 + 1.0 / 1024) * (0.5 + 127.0 / 2048),
                };
                bound += Math.Abs(values[i]) * err;
                magnitude += Math.Abs(values[i] * x[i]);
            }
        }
        Assert.True(Math.Abs(quantized - full) <= bound + 2e-5 * magnitude, $"{type}: {quantized} vs {full}, bound {bound}");
        if (type == GgmlType.F32)
            Assert.Equal(full, quantized);
    }

    [Theory]
    [InlineData(GgmlType.IQ4_NL)]
    [InlineData(GgmlType.IQ2_XXS)]
    [InlineData(GgmlType.Q8_K)]
    [InlineData(GgmlType.I8)]
    [InlineData((GgmlType)4)]
    public void UnsupportedTypesAreRefusedClearly(GgmlType type)
    {
        Assert.False(RowKernels.Supports(type));
        var e = Assert.Throws<NotSupportedException>(() => RowKernels.Dot(type, new byte[64], new float[32]));
        Assert.Contains("no compute kernel", e.Message);
        Assert.Throws<NotSupportedException>(() => RowKernels.Dequantize(type, new byte[64], new float[32]));
        Assert.Throws<NotSupportedException>(() => RowKernels.ActivationType(type));
        Assert.Throws<NotSupportedException>(() => RowKernels.DotQuantized(type, new byte[64], new byte[64]));
    }

    [Fact]
    public void WrongRowSizesThrowArgumentException()
    {
        Assert.Throws<ArgumentException>(() => RowKernels.Dot(GgmlType.F32, new byte[10], new float[3]));
        Assert.Throws<ArgumentException>(() => RowKernels.Dequantize(GgmlType.F32, new byte[12], new float[4]));
        Assert.Throws<ArgumentException>(() => RowKernels.DotQuantized(GgmlType.F32, new byte[12], new byte[16]));
        Assert.Throws<ArgumentException>(() => RowKernels.QuantizeActivations(GgmlType.Q4_0, new float[32], new byte[18]));
        Assert.Throws<ArgumentException>(() => RowKernels.ActivationBytes(GgmlType.Q4_0, 33));
    }
}
