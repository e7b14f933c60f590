using Kiln.Formats.Gguf;

namespace Kiln.Models.Llama;

/// <summary>Hyperparameters of a Llama-family model, read from the GGUF "{arch}.*" keys as llama.cpp does.</summary>
public sealed record LlamaConfig
{
    /// <summary>Architectures that share the Llama block (RMSNorm, RoPE, GQA, SwiGLU); qwen2 adds QKV biases and NeoX RoPE.</summary>
    public static readonly IReadOnlyList<string> SupportedArchitectures = ["llama", "mistral", "qwen2"];

    public required string Architecture { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int BlockCount { get; init; }
    public required int FeedForwardLength { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }
    public required int HeadDim { get; init; }
    public required int ContextLength { get; init; }
    public required int VocabSize { get; init; }
    public required float RmsEpsilon { get; init; }
    public required float RopeFreqBase { get; init; }

    /// <summary>Linear RoPE scaling: positions are multiplied by this (llama.cpp's freq_scale = 1 / factor).</summary>
    public required float RopeFreqScale { get; init; }

    public required int RopeDimensions { get; init; }
    public required RopeOrdering RopeOrdering { get; init; }

    public int QueryDim => HeadCount * HeadDim;
    public int KvDim => HeadCountKv * HeadDim;
    public int GroupSize => HeadCount / HeadCountKv;

    public static LlamaConfig FromGguf(GgufFile file)
    {
        string arch = file.TryGetString("general.architecture")
            ?? throw new ModelFormatException($"{file.Path}: missing general.architecture");
        if (!SupportedArchitectures.Contains(arch))
            throw new ModelFormatException(
                $"{file.Path}: architecture '{arch}' is not supported (supported: {string.Join(", ", SupportedArchitectures)})");

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
        long? kvHeadsKey = file.TryGetInteger($"{arch}.attention.head_count_kv");
        int kvHeads = kvHeadsKey is null ? heads : checked((int)kvHeadsKey.Value);
        if (kvHeads <= 0 || heads % kvHeads != 0)
            throw new ModelFormatException($"{file.Path}: head_count {heads} is not a multiple of head_count_kv {kvHeads}");
        long? keyLength = file.TryGetInteger($"{arch}.attention.key_length");
        if (keyLength is null && dim % heads != 0)
            throw new ModelFormatException($"{file.Path}: embedding_length {dim} is not a multiple of head_count {heads}");
        int headDim = keyLength is null ? dim / heads : checked((int)keyLength.Value);
        long? valueLength = file.TryGetInteger($"{arch}.attention.value_length");
        if (valueLength is not null && valueLength != headDim)
            throw new ModelFormatException($"{file.Path}: key_length {headDim} != value_length {valueLength} is not supported");
        if (headDim <= 0 || headDim % 2 != 0)
            throw new ModelFormatException($"{file.Path}: head dimension {headDim} must be positive and even");

        int vocab = file.TryGetArray("tokenizer.ggml.tokens")?.Count
            ?? (int)(file.TryGetInteger($"{arch}.vocab_size") ?? 0);
        var embd = file.FindTensor("token_embd.weight")
            ?? throw new ModelFormatException($"{file.Path}: missing tensor token_embd.weight");
        if (embd.Dimensions.Length != 2)
            throw new ModelFormatException($"{file.Path}: token_embd.weight must be 2-D");
        if (vocab == 0)
            vocab = checked((int)embd.Dimensions[1]);

        float ropeScale = 1f;
        string? scalingType = file.TryGetString($"{arch}.rope.scaling.type");
        float? factor = file.TryGetFloat($"{arch}.rope.scaling.factor") ?? file.TryGetFloat($"{arch}.rope.scale_linear");
        if (scalingType is not null && scalingType != "none" && scalingType != "linear")
            throw new ModelFormatException($"{file.Path}: rope scaling type '{scalingType}' is not supported (none, linear)");
        if (factor is { } f && f > 0 && scalingType != "none")
            ropeScale = 1f / f;

        int ropeDims = (int)(file.TryGetInteger($"{arch}.rope.dimension_count") ?? headDim);
        if (ropeDims <= 0 || ropeDims > headDim || ropeDims % 2 != 0)
            throw new ModelFormatException($"{file.Path}: rope.dimension_count {ropeDims} is invalid for head dimension {headDim}");

        float eps = file.TryGetFloat($"{arch}.attention.layer_norm_rms_epsilon") ?? 1e-5f;
        float freqBase = file.TryGetFloat($"{arch}.rope.freq_base") ?? 10000f;
        if (!(eps > 0) || !float.IsFinite(eps) || !(freqBase > 0) || !float.IsFinite(freqBase))
            throw new ModelFormatException($"{file.Path}: rms epsilon {eps} / rope freq_base {freqBase} out of range");

        return new LlamaConfig
        {
            Architecture = arch,
            EmbeddingLength = dim,
            BlockCount = Required("block_count"),
            FeedForwardLength = Required("feed_forward_length"),
            HeadCount = heads,
            HeadCountKv = kvHeads,
            HeadDim = headDim,
            ContextLength = Required("context_length"),
            VocabSize = vocab,
            RmsEpsilon = eps,
            RopeFreqBase = freqBase,
            RopeFreqScale = ropeScale,
            RopeDimensions = ropeDims,
            RopeOrdering = arch == "qwen2" ? RopeOrdering.NeoX : RopeOrdering.Normal,
        };
    }
}
