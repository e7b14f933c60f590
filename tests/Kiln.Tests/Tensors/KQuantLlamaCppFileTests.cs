using System.Security.Cryptography;
using System.Text.Json;
using Kiln.Formats.Gguf;
using Kiln.Tensors;
using Xunit.Abstractions;

namespace Kiln.Tests.Tensors;

/// <summary>
/// The K-quant layouts against llama.cpp's own quantizer: llama-quantize turned the F32 tensors of the tiny256
/// model into Q2_K … Q6_K, so dequantizing its bytes must land close to the F32 source. A wrong bit position,
/// scale unpacking or element order gives an error of the order of the values themselves (relative RMS ≈ 1 or
/// more), far above what quantization costs.
/// </summary>
public class KQuantLlamaCppFileTests(ITestOutputHelper output)
{
    /// <summary>
    /// Upper bounds on the relative RMS error (‖dequantized − source‖ / ‖source‖) per tensor. The source weights are
    /// uniform random; a uniform quantizer with 2^b levels spanning each sub-block's range leaves an RMS error of
    /// step/√12 with step ≈ range/(2^b − 1), i.e. a relative error ≈ 1/(2^b − 1): 0.33, 0.14, 0.067, 0.032, 0.016 for
    /// b = 2 … 6. Measured worst tensors: Q2_K 0.299 (its fitted scales and mins beat the naive grid), Q3_K 0.152,
    /// Q4_K 0.072, Q5_K 0.036, Q6_K 0.018 (the packed sub-block scales and fp16 d add a little). The bounds leave
    /// about 10% headroom; a layout mistake gives errors of the order of 1.
    /// </summary>
    public static TheoryData<string, GgmlType, double> Cases() => new()
    {
        { "tiny256-Q2_K-pure.gguf", GgmlType.Q2_K, 0.33 },
        { "tiny256-Q3_K-pure.gguf", GgmlType.Q3_K, 0.17 },
        { "tiny256-Q4_K-pure.gguf", GgmlType.Q4_K, 0.08 },
        { "tiny256-Q5_K-pure.gguf", GgmlType.Q5_K, 0.04 },
        { "tiny256-Q6_K-pure.gguf", GgmlType.Q6_K, 0.02 },
        { "tiny256-Q4_K_M.gguf", GgmlType.Q4_K, 0.08 },
        { "tiny256-Q4_K_M.gguf", GgmlType.Q6_K, 0.02 },
    };

    [SharedTheory]
    [MemberData(nameof(Cases))]
    public void DequantizedTensorsAreCloseToTheF32Source(string file, GgmlType type, double bound)
    {
        using JsonDocument refs = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "quant", "quant_refs.json")));
        var sha = refs.RootElement.GetProperty("outputs").EnumerateArray()
            .Single(o => o.GetProperty("file").GetString() == file).GetProperty("tensors").EnumerateArray()
            .ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("sha256").GetString()!);

        using var source = GgufFile.Open(SharedData.Path("refs", "quant", "tiny256-f32.gguf"));
        using var quantized = GgufFile.Open(SharedData.Path("refs", "quant", file));
        int checkedTensors = 0;
        double worst = 0;
        foreach (var t in quantized.Tensors.Where(t => t.Type == type))
        {
            ReadOnlySpan<byte> bytes = quantized.GetTensorBytes(t);
            Assert.Equal(sha[t.Name], Convert.ToHexStringLower(SHA256.HashData(bytes)));
            var src = source.GetTensor(t.Name);
            Assert.Equal(GgmlType.F32, src.Type);
            float[] expected = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(source.GetTensorBytes(src)).ToArray();

            var fast = new float[expected.Length];
            var scalar = new float[expected.Length];
            RowKernels.Dequantize(type, bytes, fast);
            Dequantizer(type)(bytes, scalar);
            Assert.True(fast.AsSpan().SequenceEqual(scalar), $"{t.Name}: dispatch and scalar dequantize differ");

            double err = 0, norm = 0;
            for (int i = 0; i < expected.Length; i++)
            {
                err += Math.Pow(fast[i] - expected[i], 2);
                norm += Math.Pow(expected[i], 2);
            }
            double relative = Math.Sqrt(err / norm);
            output.WriteLine($"{file} {t.Name} ({type}): relative RMS error {relative:F4}");
            Assert.True(relative < bound, $"{file} {t.Name}: relative RMS error {relative:F4} exceeds {bound}");
            worst = Math.Max(worst, relative);
            checkedTensors++;
        }
        output.WriteLine($"worst {worst:F4} over {checkedTensors} tensors");
        Assert.True(checkedTensors >= 2, $"{file} holds only {checkedTensors} {type} tensors");
    }

    private delegate void DequantizeRow(ReadOnlySpan<byte> src, Span<float> dst);

    private static DequantizeRow Dequantizer(GgmlType type) => type switch
    {
        GgmlType.Q2_K => Q2_K.DequantizeScalar,
        GgmlType.Q3_K => Q3_K.DequantizeScalar,
        GgmlType.Q4_K => Q4_K.DequantizeScalar,
        GgmlType.Q5_K => Q5_K.DequantizeScalar,
        _ => Q6_K.DequantizeScalar,
    };
}
