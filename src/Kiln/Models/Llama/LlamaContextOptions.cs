using Kiln.Models.Lora;
using Kiln.Threading;

namespace Kiln.Models.Llama;

public sealed record LlamaContextOptions
{
    /// <summary>Context used when neither the caller nor a smaller model limit says otherwise (llama.cpp's default too).</summary>
    public const int DefaultMaxContext = 4096;

    /// <summary>Positions the KV cache holds; 0 = the model's context length, capped at <see cref="DefaultMaxContext"/>.</summary>
    public int ContextLength { get; init; }

    /// <summary>Tokens evaluated per forward pass when ingesting a prompt.</summary>
    public int MaxBatch { get; init; } = 512;

    /// <summary>Worker threads when no <see cref="Pool"/> is given; 0 = one per physical core.</summary>
    public int Threads { get; init; }

    /// <summary>A pool to share between contexts; the context does not dispose it.</summary>
    public WorkerPool? Pool { get; init; }

    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;

    /// <summary>
    /// Tiled online-softmax attention (llama.cpp's -fa): reads the KV cache once per 16-token query tile instead of
    /// once per token and head, with O(tile) scratch; agrees with the default, llama.cpp-exact attention to float
    /// rounding rather than bit for bit.
    /// </summary>
    public bool FlashAttention { get; init; }

    /// <summary>LoRA adapters added to the base matrices (validated against the model when the context is made).</summary>
    public IReadOnlyList<LoraAdapter> Adapters { get; init; } = [];
}
