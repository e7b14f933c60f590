using Kiln.Formats.Gguf;

namespace Kiln.Models.Gpt2;

/// <summary>Hyperparameters of a GPT-2 model, read from the GGUF "gpt2.*" keys that llama.cpp requires.</summary>
public sealed record Gpt2Config
{
    public const string Architecture = "gpt2";

    public required int EmbeddingLength { get; init; }
    public required int BlockCount { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }

    /// <summary>Positions the learned position embedding covers: the model cannot look further.</summary>
    public required int ContextLength { get; init; }

    public required int VocabSize { get; init; }
    public required float LayerNormEpsilon { get; init; }

    public int HeadDim => EmbeddingLength / HeadCount;
    public int KvDim => HeadCountKv * HeadDim;

    /// <summary>Rows of the fused Q/K/V projection: queries, then keys, then values.</summary>
    public int QkvDim => EmbeddingLength + 2 * KvDim;

    public static Gpt2Config FromGguf(GgufFile file)
    {
        string arch = file.TryGetString("general.architecture")
            ?? throw new ModelFormatException($"{file.Path}: missing general.architecture");
        if (arch != Architecture)
            throw new ModelFormatException($"{file.Path}: architecture '{arch}' is not {Architecture}");

        int Required(string key)
        {
            long v = file.TryGetInteger($"{arch}.{key}")
                ?? throw new ModelFormatException($"{file.Path}: missing {arch}.{key}");
            if (v <= 0 || v > int.MaxValue)
                throw new ModelFormatException($"{file.Path}: {arch}.{key} = {v} is out of range");
            return (int)v;
        }

        int dim = Required("embedding_length");
        int heads = Required("attention.head_count");
        if (dim % heads != 0)
            throw new ModelFormatException($"{file.Path}: embedding_length {dim} is not a multiple of head_count {heads}");
        long kvKey = file.TryGetInteger($"{arch}.attention.head_count_kv") ?? heads;
        if (kvKey <= 0 || heads % kvKey != 0)
            throw new ModelFormatException($"{file.Path}: head_count {heads} is not a multiple of head_count_kv {kvKey}");
        float eps = file.TryGetFloat($"{arch}.attention.layer_norm_epsilon")
            ?? throw new ModelFormatException($"{file.Path}: missing {arch}.attention.layer_norm_epsilon");
        if (!(eps > 0) || !float.IsFinite(eps))
            throw new ModelFormatException($"{file.Path}: layer norm epsilon {eps} out of range");

        var embd = file.FindTensor("token_embd.weight")
            ?? throw new ModelFormatException($"{file.Path}: missing tensor token_embd.weight");
        if (embd.Dimensions.Length != 2)
            throw new ModelFormatException($"{file.Path}: token_embd.weight must be 2-D");
        int vocab = file.TryGetArray("tokenizer.ggml.tokens")?.Count ?? checked((int)embd.Dimensions[1]);

        return new Gpt2Config
        {
            EmbeddingLength = dim,
            BlockCount = Required("block_count"),
            FeedForwardLength = Required("feed_forward_length"),
            HeadCount = heads,
            HeadCountKv = (int)kvKey,
            ContextLength = Required("context_length"),
            VocabSize = vocab,
            LayerNormEpsilon = eps,
        };
    }
}
