using System.Runtime.InteropServices;
using Kiln.Formats.Gguf;
using Kiln.Quantization;
using Kiln.Tensors;

namespace Kiln.Tests.Quantization;

/// <summary>
/// The quantizer on small synthetic models: llama.cpp's mix rules written out by hand for an 8-layer model,
/// the row-length fallback, F16 input, --leave-output, and refusals that must leave nothing behind.
/// </summary>
public class GgufQuantizerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-quant-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] LayerWeights =
        ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

    /// <summary>An 8-layer llama-shaped model with 256-wide rows (few of them, to stay small).</summary>
    private string WriteModel(string name, GgmlType weightType = GgmlType.F32, int layers = 8,
        (string Name, long[] Dims)[]? extra = null, GgmlType? odd = null)
    {
        var writer = new GgufWriter();
        writer.SetMetadata("general.architecture", GgufValue.FromString("llama"));
        writer.SetMetadata("general.file_type", GgufValue.FromUInt32(0));
        writer.SetMetadata("llama.block_count", GgufValue.FromUInt32((uint)layers));
        writer.SetMetadata("llama.attention.head_count", GgufValue.FromUInt32(8));
        writer.SetMetadata("llama.attention.head_count_kv", GgufValue.FromUInt32(8));
        var random = new Random(5);
        void Add(string n, GgmlType type, params long[] dims)
        {
            long count = dims.Aggregate(1L, (a, d) => a * d);
            var values = new float[count];
            for (int i = 0; i < values.Length; i++)
                values[i] = (float)(random.NextDouble() * 2 - 1);
            var bytes = new byte[GgmlTypeTraits.RowBytes(type, dims[0]) * (count / dims[0])];
            for (long r = 0; r < count / dims[0]; r++)
            {
                int rowBytes = (int)GgmlTypeTraits.RowBytes(type, dims[0]);
                var row = values.AsSpan((int)(r * dims[0]), (int)dims[0]);
                var dst = bytes.AsSpan((int)r * rowBytes, rowBytes);
                if (type == GgmlType.F32)
                    MemoryMarshal.AsBytes(row).CopyTo(dst);
                else if (type == GgmlType.BF16)
                    BF16.Quantize(row, dst);
                else
                    RowQuantizer.Quantize(type, row, dst);
            }
            writer.AddTensor(n, type, dims, bytes);
        }
        Add("token_embd.weight", weightType, 256, 16);
        Add("output_norm.weight", GgmlType.F32, 256);
        Add("output.weight", weightType, 256, 16);
        for (int i = 0; i < layers; i++)
        {
            Add($"blk.{i}.attn_norm.weight", GgmlType.F32, 256);
            Add($"blk.{i}.ffn_norm.weight", GgmlType.F32, 256);
            foreach (string w in LayerWeights)
                Add($"blk.{i}.{w}.weight", i == 0 && w == "attn_q" && odd is { } t ? t : weightType, 256, 4);
        }
        foreach (var (n, dims) in extra ?? [])
            Add(n, weightType, dims);
        string path = Path.Combine(_dir, name);
        writer.Write(path);
        return path;
    }

    private Dictionary<string, GgmlType> Types(string path)
    {
        using var f = GgufFile.Open(path);
        return f.Tensors.ToDictionary(t => t.Name, t => t.Type);
    }

    [Theory]
    // llama_tensor_get_type by hand for 8 layers: use_more_bits picks layers 0, 3, 6 and 7 (i < 8/8, i >= 7*8/8,
    // (i - 1) % 3 == 2); Q4_K_S gives attn_v of layers 0-3 and ffn_down of layer 0 Q5_K; Q3_K_M gives attn_v of
    // layers 0-1 Q5_K, the other attn_v, every ffn_down and attn_output Q4_K; Q2_K gives attn_v Q3_K (GQA 1),
    // ffn_down and attn_output Q3_K.
    [InlineData("Q4_K_M", "Q4_K", "Q6_K,Q4_K,Q4_K,Q6_K,Q4_K,Q4_K,Q6_K,Q6_K", "Q6_K,Q4_K,Q4_K,Q6_K,Q4_K,Q4_K,Q6_K,Q6_K", "Q4_K")]
    [InlineData("Q5_K_M", "Q5_K", "Q6_K,Q5_K,Q5_K,Q6_K,Q5_K,Q5_K,Q6_K,Q6_K", "Q6_K,Q5_K,Q5_K,Q6_K,Q5_K,Q5_K,Q6_K,Q6_K", "Q5_K")]
    [InlineData("Q4_K_S", "Q4_K", "Q5_K,Q5_K,Q5_K,Q5_K,Q4_K,Q4_K,Q4_K,Q4_K", "Q5_K,Q4_K,Q4_K,Q4_K,Q4_K,Q4_K,Q4_K,Q4_K", "Q4_K")]
    [InlineData("Q3_K_M", "Q3_K", "Q5_K,Q5_K,Q4_K,Q4_K,Q4_K,Q4_K,Q4_K,Q4_K", "Q4_K,Q4_K,Q4_K,Q4_K,Q4_K,Q4_K,Q4_K,Q4_K", "Q4_K")]
    [InlineData("Q2_K", "Q2_K", "Q3_K,Q3_K,Q3_K,Q3_K,Q3_K,Q3_K,Q3_K,Q3_K", "Q3_K,Q3_K,Q3_K,Q3_K,Q3_K,Q3_K,Q3_K,Q3_K", "Q3_K")]
    public void MixRulesFollowLlamaCpp(string mix, string baseType, string attnV, string ffnDown, string attnOutput)
    {
        string input = WriteModel("in.gguf");
        string output = Path.Combine(_dir, "out.gguf");
        GgufQuantizer.Quantize(input, output, new QuantizationOptions { Mix = QuantizationMix.Parse(mix), Threads = 2 });

        var types = Types(output);
        Assert.Equal(GgmlType.Q6_K, types["output.weight"]);
        Assert.Equal(baseType, types["token_embd.weight"].ToString());
        Assert.Equal(GgmlType.F32, types["output_norm.weight"]);
        Assert.Equal(attnV, string.Join(',', Enumerable.Range(0, 8).Select(i => types[$"blk.{i}.attn_v.weight"])));
        Assert.Equal(ffnDown, string.Join(',', Enumerable.Range(0, 8).Select(i => types[$"blk.{i}.ffn_down.weight"])));
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(attnOutput, types[$"blk.{i}.attn_output.weight"].ToString());
            Assert.Equal(baseType, types[$"blk.{i}.attn_q.weight"].ToString());
            Assert.Equal(GgmlType.F32, types[$"blk.{i}.attn_norm.weight"]);
        }
    }

    [Fact]
    public void RowsThatDoNotFitTheBlockFallBackAndAreReported()
    {
        string input = WriteModel("in.gguf", extra: [("blk.0.extra96.weight", [96, 4]), ("blk.0.extra40.weight", [40, 4])]);
        string output = Path.Combine(_dir, "out.gguf");
        var summary = GgufQuantizer.Quantize(input, output, new QuantizationOptions { Mix = QuantizationMix.Parse("Q4_K_M") });

        var types = Types(output);
        Assert.Equal(GgmlType.Q5_0, types["blk.0.extra96.weight"]); // llama.cpp's Q4_K fallback
        Assert.Equal(GgmlType.F16, types["blk.0.extra40.weight"]);  // no 32-block type fits 40
        Assert.Equal(["blk.0.extra40.weight", "blk.0.extra96.weight"], summary.Fallbacks.Select(t => t.Name).Order());
        Assert.All(summary.Fallbacks, t => Assert.Equal(GgmlType.Q4_K, t.FallbackFrom));

        // the fallback data is real: dequantized values stay close to the source
        using var src = GgufFile.Open(input);
        using var dst = GgufFile.Open(output);
        foreach (string name in new[] { "blk.0.extra96.weight", "blk.0.extra40.weight" })
        {
            float[] expected = MemoryMarshal.Cast<byte, float>(src.GetTensorBytes(src.GetTensor(name))).ToArray();
            var t = dst.GetTensor(name);
            var actual = new float[expected.Length];
            for (long r = 0; r < t.Rows; r++)
            {
                int rowBytes = (int)GgmlTypeTraits.RowBytes(t.Type, t.RowLength);
                RowKernels.Dequantize(t.Type, dst.GetTensorBytes(t).Slice((int)r * rowBytes, rowBytes),
                    actual.AsSpan((int)(r * t.RowLength), (int)t.RowLength));
            }
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - actual[i]) < 0.07f, $"{name}[{i}]: {actual[i]} vs {expected[i]}");
        }
    }

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.BF16)]
    public void HalfPrecisionInputQuantizesItsExactFloatValues(GgmlType sourceType)
    {
        string input = WriteModel("in.gguf", sourceType, layers: 1);
        string output = Path.Combine(_dir, "out.gguf");
        GgufQuantizer.Quantize(input, output, new QuantizationOptions { Mix = QuantizationMix.Parse("Q8_0"), Pure = true, Threads = 2 });

        using var src = GgufFile.Open(input);
        using var dst = GgufFile.Open(output);
        var q = dst.GetTensor("blk.0.ffn_up.weight");
        Assert.Equal(GgmlType.Q8_0, q.Type);
        var halves = MemoryMarshal.Cast<byte, ushort>(src.GetTensorBytes(src.GetTensor("blk.0.ffn_up.weight")));
        var floats = new float[halves.Length];
        for (int i = 0; i < floats.Length; i++)
            floats[i] = sourceType == GgmlType.F16 ? HalfBits.ToSingle(halves[i]) : BitConverter.Int32BitsToSingle(halves[i] << 16);
        var expected = new byte[q.ByteSize];
        Q8_0.QuantizeScalar(floats, expected);
        Assert.True(expected.AsSpan().SequenceEqual(dst.GetTensorBytes(q)));
        Assert.Equal(GgmlType.F32, dst.GetTensor("blk.0.attn_norm.weight").Type); // copied as it was
        Assert.Equal(7, dst.GetInteger("general.file_type"));
        Assert.Equal(2, dst.GetInteger("general.quantization_version"));
    }

    [Fact]
    public void LeaveOutputKeepsOutputWeightUnquantized()
    {
        string input = WriteModel("in.gguf", layers: 1);
        string output = Path.Combine(_dir, "out.gguf");
        GgufQuantizer.Quantize(input, output, new QuantizationOptions { Mix = QuantizationMix.Parse("Q4_0"), LeaveOutput = true });
        var types = Types(output);
        Assert.Equal(GgmlType.F32, types["output.weight"]);
        Assert.Equal(GgmlType.Q4_0, types["token_embd.weight"]);

        GgufQuantizer.Quantize(input, output, new QuantizationOptions { Mix = QuantizationMix.Parse("Q4_0") });
        Assert.Equal(GgmlType.Q6_K, Types(output)["output.weight"]); // llama.cpp's default for output.weight
    }

    [Fact]
    public void QuantizedInputIsRefusedAndNothingIsWritten()
    {
        string input = WriteModel("in.gguf", layers: 1, odd: GgmlType.Q8_0);
        string output = Path.Combine(_dir, "out.gguf");
        var e = Assert.Throws<InvalidDataException>(() =>
            GgufQuantizer.Quantize(input, output, new QuantizationOptions { Mix = QuantizationMix.Parse("Q4_0") }));
        Assert.Contains("blk.0.attn_q.weight", e.Message);
        Assert.Contains("q8_0", e.Message);
        Assert.Equal(["in.gguf"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void FailureWhileWritingLeavesNoFileBehind()
    {
        string input = WriteModel("in.gguf", layers: 1);
        string output = Path.Combine(_dir, "out.gguf");
        var options = new QuantizationOptions
        {
            Mix = QuantizationMix.Parse("Q4_0"),
            TensorWritten = _ => throw new IOException("disk full (simulated)"),
        };
        Assert.Throws<IOException>(() => GgufQuantizer.Quantize(input, output, options));
        Assert.Equal(["in.gguf"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void InputAsOutputIsRefused()
    {
        string input = WriteModel("in.gguf", layers: 1);
        Assert.Throws<ArgumentException>(() => GgufQuantizer.Quantize(input, input, new QuantizationOptions()));
        string link = Path.Combine(_dir, "link.gguf");
        File.CreateSymbolicLink(link, input);
        Assert.Throws<ArgumentException>(() => GgufQuantizer.Quantize(input, link, new QuantizationOptions()));
        Assert.False(GgufQuantizer.IsSameFile(input, Path.Combine(_dir, "other.gguf")));
    }

    [Theory]
    [InlineData("q4_k_m", "Q4_K_M", 15u)]
    [InlineData("Q4_K", "Q4_K_M", 15u)]
    [InlineData("Q3_K", "Q3_K_M", 12u)]
    [InlineData("Q5_K_S", "Q5_K_S", 16u)]
    [InlineData("Q8_0", "Q8_0", 7u)]
    public void MixNamesAndFileTypes(string name, string canonical, uint fileType)
    {
        var mix = QuantizationMix.Parse(name);
        Assert.Equal(canonical, mix.Name);
        Assert.Equal(fileType, mix.FileType);
    }

    [Fact]
    public void UnknownMixNameListsTheKnownOnes()
    {
        var e = Assert.Throws<FormatException>(() => QuantizationMix.Parse("Q7_K"));
        Assert.Contains("Q4_K_M", e.Message);
    }
}
