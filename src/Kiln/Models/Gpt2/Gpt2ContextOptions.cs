using Kiln.Models.Llama;
using Kiln.Threading;

namespace Kiln.Models.Gpt2;

public sealed record Gpt2ContextOptions
{
    /// <summary>Positions the KV cache holds; 0 = the model's context length (its learned positions), capped at 4096.</summary>
    public int ContextLength { get; init; }

    /// <summary>Tokens evaluated per forward pass when ingesting a prompt.</summary>
    public int MaxBatch { get; init; } = 512;

    /// <summary>Worker threads when no <see cref="Pool"/> is given; 0 = one per physical core.</summary>
    public int Threads { get; init; }

    /// <summary>A pool to share between contexts; the context does not dispose it.</summary>
    public WorkerPool? Pool { get; init; }

    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;

    /// <summary>Tiled online-softmax attention, as for Llama (<see cref="LlamaContextOptions.FlashAttention"/>).</summary>
    public bool FlashAttention { get; init; }
}
