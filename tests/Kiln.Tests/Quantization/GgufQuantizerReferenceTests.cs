using System.Security.Cryptography;
using System.Text.Json;
using Kiln.Formats.Gguf;
using Kiln.Quantization;
using Kiln.Tensors;

namespace Kiln.Tests.Quantization;

/// <summary>
/// The whole quantizer against llama-quantize: quantizing tiny256-f32.gguf must give every tensor the type
/// llama.cpp chose, in llama.cpp's order, with the same bytes (sha256 per tensor from quant_refs.json), and the
/// same file (metadata order, general.file_type, padding) down to the file's sha256.
/// </summary>
public class GgufQuantizerReferenceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-quant-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, string, bool> Cases() => new()
    {
        { "tiny256-Q8_0-pure.gguf", "Q8_0", true },
        { "tiny256-Q4_0-pure.gguf", "Q4_0", true },
        { "tiny256-Q4_1-pure.gguf", "Q4_1", true },
        { "tiny256-Q5_0-pure.gguf", "Q5_0", true },
        { "tiny256-Q5_1-pure.gguf", "Q5_1", true },
        { "tiny256-Q2_K-pure.gguf", "Q2_K", true },
        { "tiny256-Q3_K-pure.gguf", "Q3_K_S", true },
        { "tiny256-Q4_K-pure.gguf", "Q4_K_S", true },
        { "tiny256-Q5_K-pure.gguf", "Q5_K_S", true },
        { "tiny256-Q6_K-pure.gguf", "Q6_K", true },
        { "tiny256-Q4_K_M.gguf", "Q4_K_M", false },
        { "tiny256-Q8_0.gguf", "Q8_0", false },
    };

    [SharedTheory]
    [MemberData(nameof(Cases))]
    public void OutputEqualsLlamaQuantize(string file, string type, bool pure)
    {
        using JsonDocument refs = JsonDocument.Parse(File.ReadAllBytes(SharedData.Path("refs", "quant", "quant_refs.json")));
        JsonElement expected = refs.RootElement.GetProperty("outputs").EnumerateArray()
            .Single(o => o.GetProperty("file").GetString() == file);
        string output = Path.Combine(_dir, file);

        var summary = GgufQuantizer.Quantize(SharedData.Path("refs", "quant", "tiny256-f32.gguf"), output,
            new QuantizationOptions { Mix = QuantizationMix.Parse(type), Pure = pure, Threads = 2 });

        var expectedTensors = expected.GetProperty("tensors").EnumerateArray().ToList();
        using (var gguf = GgufFile.Open(output))
        {
            Assert.Equal(expectedTensors.Select(t => t.GetProperty("name").GetString()), gguf.Tensors.Select(t => t.Name));
            for (int i = 0; i < expectedTensors.Count; i++)
            {
                var t = gguf.Tensors[i];
                Assert.Equal(expectedTensors[i].GetProperty("ggml_type").GetString(), t.Type.ToString());
                Assert.True(expectedTensors[i].GetProperty("sha256").GetString() == Convert.ToHexStringLower(SHA256.HashData(gguf.GetTensorBytes(t))),
                    $"{file} {t.Name}: bytes differ from llama-quantize's");
            }
            Assert.Equal(expected.GetProperty("metadata_non_tokenizer").GetProperty("general.file_type").GetInt64(), gguf.GetInteger("general.file_type"));
        }
        Assert.Equal(expected.GetProperty("file_sha256").GetString(), Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(output))));
        Assert.Equal(expected.GetProperty("file_size").GetInt64(), summary.OutputFileBytes);
        Assert.Empty(summary.Fallbacks);
        Assert.Equal(new[] { Path.GetFileName(output) }, Directory.GetFiles(_dir).Select(Path.GetFileName));
    }
}
