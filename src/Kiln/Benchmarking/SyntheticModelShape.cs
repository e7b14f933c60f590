namespace Kiln.Benchmarking;

/// <summary>
/// The hyperparameters of a Llama-family model, enough to build one with random weights for speed
/// measurements. The presets carry the real shapes of well-known models (from their published configs).
/// </summary>
public sealed record SyntheticModelShape
{
    public required string Name { get; init; }
    public string Architecture { get; init; } = "llama";
    public required int EmbeddingLength { get; init; }
    public required int BlockCount { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int VocabSize { get; init; }
    public required int ContextLength { get; init; }
    public float RopeFreqBase { get; init; } = 10000f;
    public float RmsEpsilon { get; init; } = 1e-5f;

    /// <summary>No output.weight: the classifier reuses the token embedding.</summary>
    public bool TiedEmbeddings { get; init; }

    /// <summary>Q, K and V projections carry biases (qwen2).</summary>
    public bool AttentionBiases { get; init; }

    /// <summary>The token generation starts from, as llama-bench starts from BOS.</summary>
    public int BosTokenId { get; init; } = 1;

    public int HeadDim => EmbeddingLength / HeadCount;
    public int QueryDim => HeadCount * HeadDim;
    public int KvDim => HeadCountKv * HeadDim;

    /// <summary>Elements of every tensor the model file holds (weights, norms and biases).</summary>
    public long ParameterCount
    {
        get
        {
            long d = EmbeddingLength, ffn = FeedForwardLength;
            long perLayer = d * QueryDim + 2 * d * KvDim + (long)QueryDim * d + 3 * d * ffn + 2 * d
                + (AttentionBiases ? QueryDim + 2L * KvDim : 0);
            return (long)VocabSize * d * (TiedEmbeddings ? 1 : 2) + d + BlockCount * perLayer;
        }
    }

    public static readonly SyntheticModelShape TinyLlama = new()
    {
        Name = "tinyllama-1.1b",
        EmbeddingLength = 2048,
        BlockCount = 22,
        HeadCount = 32,
        HeadCountKv = 4,
        FeedForwardLength = 5632,
        VocabSize = 32000,
        ContextLength = 2048,
    };

    public static readonly SyntheticModelShape Llama2_7B = new()
    {
        Name = "llama2-7b",
        EmbeddingLength = 4096,
        BlockCount = 32,
        HeadCount = 32,
        HeadCountKv = 32,
        FeedForwardLength = 11008,
        VocabSize = 32000,
        ContextLength = 4096,
    };

    public static readonly SyntheticModelShape Llama3_8B = new()
    {
        Name = "llama3-8b",
        EmbeddingLength = 4096,
        BlockCount = 32,
        HeadCount = 32,
        HeadCountKv = 8,
        FeedForwardLength = 14336,
        VocabSize = 128256,
        ContextLength = 8192,
        RopeFreqBase = 500000f,
        BosTokenId = 128000,
    };

    public static readonly SyntheticModelShape Qwen2_0_5B = new()
    {
        Name = "qwen2-0.5b",
        Architecture = "qwen2",
        EmbeddingLength = 896,
        BlockCount = 24,
        HeadCount = 14,
        HeadCountKv = 2,
        FeedForwardLength = 4864,
        VocabSize = 151936,
        ContextLength = 32768,
        RopeFreqBase = 1000000f,
        RmsEpsilon = 1e-6f,
        TiedEmbeddings = true,
        AttentionBiases = true,
        BosTokenId = 151643,
    };

    public static IReadOnlyList<SyntheticModelShape> Presets { get; } = [TinyLlama, Llama2_7B, Llama3_8B, Qwen2_0_5B];

    public static SyntheticModelShape? Find(string name) =>
        Presets.FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase));
}
