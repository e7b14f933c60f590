using Kiln.Models.Llama;

namespace Kiln.Evaluation;

public sealed record PerplexityOptions
{
    /// <summary>llama-perplexity's default context (its -c).</summary>
    public const int DefaultContextLength = 512;

    /// <summary>Tokens per chunk (llama.cpp's n_ctx): even, at least 4, at most the model's context length.</summary>
    public int ContextLength { get; init; } = DefaultContextLength;

    /// <summary>Worker threads; 0 = one per physical core.</summary>
    public int Threads { get; init; }

    /// <summary>Evaluate at most this many chunks (llama.cpp's --chunks); 0 = every whole chunk of the text.</summary>
    public int MaxChunks { get; init; }

    /// <summary>llama.cpp's default KV cache is F16; its rounding is part of the reference figures.</summary>
    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;

    /// <summary>Evaluate with <see cref="LlamaContextOptions.FlashAttention"/>.</summary>
    public bool FlashAttention { get; init; }
}
