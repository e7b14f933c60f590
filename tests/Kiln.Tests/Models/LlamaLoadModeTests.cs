using Kiln.Formats.Gguf;
using Kiln.Models.Llama;
using Kiln.Tensors;

namespace Kiln.Tests.Models;

/// <summary>A model whose file was copied into memory computes exactly what the mapped model computes.</summary>
public sealed class LlamaLoadModeTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-loadmode-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly int[] Prompt = [1, 259, 260, 261, 262, 72, 101, 108, 108, 111];

    [Theory]
    [InlineData(GgmlType.F16, false)]
    [InlineData(GgmlType.Q8_0, false)]
    [InlineData(GgmlType.Q4_0, false)]
    [InlineData(GgmlType.Q4_0, true)]
    public void CopiedAndMappedModelsGiveTheSameBits(GgmlType type, bool tied)
    {
        // Row counts outside groups of eight: k/v 12 (one head of 12), the classifier's 267.
        var spec = new RandomLlama { WeightType = type, Dim = 96, Heads = 8, KvHeads = 1, Ffn = 160, TiedOutput = tied };
        string path = spec.Write(Path.Combine(_dir, $"{type}-{tied}.gguf"));
        float[] mapped = Logits(path, GgufLoadMode.Map, out var mappedMode);
        float[] copied = Logits(path, GgufLoadMode.Copy, out var copiedMode);
        Assert.Equal(GgufLoadMode.Map, mappedMode);
        Assert.Equal(GgufLoadMode.Copy, copiedMode);
        Assert.Equal(mapped.Select(BitConverter.SingleToInt32Bits), copied.Select(BitConverter.SingleToInt32Bits));
    }

    private static float[] Logits(string path, GgufLoadMode mode, out GgufLoadMode actual)
    {
        using var model = LlamaModel.Load(path, mode);
        actual = model.File.LoadMode;
        int vocab = model.Config.VocabSize;
        var logits = new float[(Prompt.Length + 3) * vocab];
        // A batched prompt (tile kernels), then single tokens (decode kernels).
        using var context = new LlamaContext(model, new LlamaContextOptions { Threads = 2, MaxBatch = Prompt.Length });
        context.Evaluate(Prompt, logits.AsSpan(0, Prompt.Length * vocab), allLogits: true);
        for (int i = 0; i < 3; i++)
            context.Evaluate([200 + i], logits.AsSpan((Prompt.Length + i) * vocab, vocab), allLogits: true);
        return logits;
    }
}
