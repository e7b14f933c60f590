using System.Security.Cryptography;
using System.Text.Json;
using Kiln.Tensors;

namespace Kiln.Tests.Tensors;

/// <summary>
/// Byte identity with llama.cpp's llama-quantize (--pure): quantizing the F32 source tensors of the tiny256
/// model must reproduce the sha256 of every quantized tensor it wrote. Tensor offsets come from
/// quant_refs.json (checked against the source sha256 first), so no GGUF reader is needed here.
/// </summary>
public class QuantizationReferenceTests
{
    private sealed record SourceTensor(long Offset, int Bytes, int Elements, string Sha256);

    public static TheoryData<string, bool> Cases() => new()
    {
        { "tiny256-Q8_0-pure.gguf", false },
        { "tiny256-Q8_0-pure.gguf", true },
        { "tiny256-Q4_0-pure.gguf", false },
        { "tiny256-Q4_0-pure.gguf", true },
        { "tiny256-Q4_1-pure.gguf", false },
        { "tiny256-Q5_0-pure.gguf", false },
        { "tiny256-Q5_1-pure.gguf", false },
        { "tiny256-Q2_K-pure.gguf", false },
        { "tiny256-Q3_K-pure.gguf", false },
        { "tiny256-Q4_K-pure.gguf", false },
        { "tiny256-Q5_K-pure.gguf", false },
        { "tiny256-Q6_K-pure.gguf", false },
    };

    [SharedTheory]
    [MemberData(nameof(Cases))]
    public void QuantizeReproducesLlamaCppBytes(string file, bool scalar)
    {
        using JsonDocument refs = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "quant", "quant_refs.json")));
        var sources = new Dictionary<string, SourceTensor>();
        foreach (JsonElement t in refs.RootElement.GetProperty("source_model").GetProperty("tensors").EnumerateArray())
            sources[t.GetProperty("name").GetString()!] = new SourceTensor(
                t.GetProperty("file_offset").GetInt64(), t.GetProperty("n_bytes").GetInt32(),
                t.GetProperty("n_elements").GetInt32(), t.GetProperty("sha256").GetString()!);

        JsonElement output = refs.RootElement.GetProperty("outputs").EnumerateArray()
            .Single(o => o.GetProperty("file").GetString() == file);

        using FileStream f32 = File.OpenRead(SharedData.Path("refs", "quant", "tiny256-f32.gguf"));
        int checkedTensors = 0;
        foreach (JsonElement t in output.GetProperty("tensors").EnumerateArray())
        {
            string type = t.GetProperty("ggml_type").GetString()!;
            if (type == "F32")
                continue;
            string name = t.GetProperty("name").GetString()!;
            SourceTensor src = sources[name];

            var raw = new byte[src.Bytes];
            f32.Position = src.Offset;
            f32.ReadExactly(raw);
            Assert.Equal(src.Sha256, Convert.ToHexStringLower(SHA256.HashData(raw)));
            float[] values = new float[src.Elements];
            Buffer.BlockCopy(raw, 0, values, 0, raw.Length);

            // ggml blocks never straddle rows here (row lengths are multiples of 32), so one call covers the tensor
            byte[] quantized = type switch
            {
                "Q8_0" => Quantize(values, Q8_0.BlockSize, Q8_0.BlockBytes, scalar ? Q8_0.QuantizeScalar : Q8_0.Quantize),
                "Q4_0" => Quantize(values, Q4_0.BlockSize, Q4_0.BlockBytes, scalar ? Q4_0.QuantizeScalar : Q4_0.Quantize),
                "Q4_1" => Quantize(values, Q4_1.BlockSize, Q4_1.BlockBytes, Q4_1.Quantize),
                "Q5_0" => Quantize(values, Q5_0.BlockSize, Q5_0.BlockBytes, Q5_0.Quantize),
                "Q5_1" => Quantize(values, Q5_1.BlockSize, Q5_1.BlockBytes, Q5_1.Quantize),
                "Q2_K" => Quantize(values, Q2_K.BlockSize, Q2_K.BlockBytes, Q2_K.Quantize),
                "Q3_K" => Quantize(values, Q3_K.BlockSize, Q3_K.BlockBytes, Q3_K.Quantize),
                "Q4_K" => Quantize(values, Q4_K.BlockSize, Q4_K.BlockBytes, Q4_K.Quantize),
                "Q5_K" => Quantize(values, Q5_K.BlockSize, Q5_K.BlockBytes, Q5_K.Quantize),
                "Q6_K" => Quantize(values, Q6_K.BlockSize, Q6_K.BlockBytes, Q6_K.Quantize),
                _ => throw new InvalidOperationException($"{file} {name}: no quantizer for {type}"),
            };
            Assert.True(t.GetProperty("sha256").GetString() == Convert.ToHexStringLower(SHA256.HashData(quantized)),
                $"{file} {name}: quantized bytes differ from llama.cpp's");
            checkedTensors++;
        }
        Assert.Equal(16, checkedTensors); // 7 weights in each of 2 layers, token_embd, output
    }

    private delegate void Quantizer(ReadOnlySpan<float> src, Span<byte> dst);

    private static byte[] Quantize(float[] values, int blockSize, int blockBytes, Quantizer quantize)
    {
        var dst = new byte[values.Length / blockSize * blockBytes];
        quantize(values, dst);
        return dst;
    }
}
