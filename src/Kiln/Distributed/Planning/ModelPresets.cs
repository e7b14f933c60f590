using Kiln.Benchmarking;
using Kiln.Training;

namespace Kiln.Distributed.Planning;

/// <summary>
/// Published model shapes to plan for by name. The Llama ones are the benchmark's (<see cref="SyntheticModelShape"/>);
/// GPT-2's come from its released configs (n_layer, n_embd, n_head; 50,257 tokens, 1,024 positions) and Llama 2 70B's
/// from Meta's (80 × 8192, 64 heads, 8 KV heads, FFN 28,672).
/// </summary>
public static class ModelPresets
{
    public static IReadOnlyList<(string Name, TrainingConfig Config)> All { get; } =
    [
        ("gpt2-small", Gpt2(12, 768, 12)),
        ("gpt2-medium", Gpt2(24, 1024, 16)),
        ("gpt2-large", Gpt2(36, 1280, 20)),
        ("gpt2-xl", Gpt2(48, 1600, 25)),
        (SyntheticModelShape.TinyLlama.Name, FromShape(SyntheticModelShape.TinyLlama)),
        (SyntheticModelShape.Llama2_7B.Name, FromShape(SyntheticModelShape.Llama2_7B)),
        (SyntheticModelShape.Llama3_8B.Name, FromShape(SyntheticModelShape.Llama3_8B)),
        ("llama2-70b", new TrainingConfig
        {
            Family = ModelFamily.Llama, Layers = 80, Dim = 8192, Heads = 64, KvHeads = 8, Ffn = 28672, Vocab = 32000, Context = 4096,
        }),
    ];

    public static IEnumerable<string> Names => All.Select(p => p.Name);

    public static TrainingConfig? Find(string name) =>
        All.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase)).Config;

    private static TrainingConfig Gpt2(int layers, int dim, int heads) => new()
    {
        Family = ModelFamily.Gpt2, Layers = layers, Dim = dim, Heads = heads, Vocab = 50257, Context = 1024,
    };

    private static TrainingConfig FromShape(SyntheticModelShape s) => new()
    {
        Family = ModelFamily.Llama,
        Layers = s.BlockCount,
        Dim = s.EmbeddingLength,
        Heads = s.HeadCount,
        KvHeads = s.HeadCountKv,
        Ffn = s.FeedForwardLength,
        Vocab = s.VocabSize,
        Context = s.ContextLength,
        RopeFreqBase = s.RopeFreqBase,
        NormEpsilon = s.RmsEpsilon,
    };
}
