using Kiln.Models.Llama;

namespace Kiln.Serving;

/// <summary>Settings of a <see cref="LlamaEngine"/> (the <c>kiln serve</c> flags of the same names).</summary>
public sealed record LlamaEngineOptions
{
    /// <summary>Most sequences decoding at once (<c>--max-seqs</c>).</summary>
    public int MaxSequences { get; init; } = 16;

    /// <summary>Most tokens in one step, decodes plus prompt chunks (<c>--max-batch-tokens</c>).</summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>Most prompt tokens in a step that also decodes (<c>--max-prefill-tokens</c>); 0 = no cap below <see cref="MaxBatchTokens"/>. See <see cref="SchedulerOptions.MaxPrefillTokens"/>.</summary>
    public int MaxPrefillTokens { get; init; } = SchedulerOptions.DefaultMaxPrefillTokens;

    /// <summary>Longest sequence (<c>--ctx</c>); 0 = the model's, capped at <see cref="LlamaContextOptions.DefaultMaxContext"/>. Also capped by the KV pool.</summary>
    public int ContextLength { get; init; }

    /// <summary>Memory of the KV block pool in MiB (<c>--kv-cache-mb</c>); 0 = enough for every sequence at full context, at most 1 GiB.</summary>
    public int KvCacheMegabytes { get; init; }

    /// <summary>Exact number of KV blocks, overriding <see cref="KvCacheMegabytes"/> (tests of tiny pools); 0 = from the budget.</summary>
    public int KvCacheBlocks { get; init; }

    public KvCacheType KvCacheType { get; init; } = KvCacheType.F16;

    /// <summary>Worker threads (<c>--threads</c>); 0 = one per physical core.</summary>
    public int Threads { get; init; }

    /// <summary>Most requests waiting for admission; more are refused with <see cref="EngineRejection.QueueFull"/>.</summary>
    public int MaxWaiting { get; init; } = 256;

    /// <summary>Reuse the cached KV blocks of earlier requests with the same prompt prefix.</summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>Name reported as <see cref="IInferenceEngine.ModelName"/>; null = the model's <c>general.name</c> or file name.</summary>
    public string? ModelName { get; init; }

    public void Validate()
    {
        if (MaxSequences < 1) throw Invalid(nameof(MaxSequences), MaxSequences, "at least 1");
        if (MaxBatchTokens < 1) throw Invalid(nameof(MaxBatchTokens), MaxBatchTokens, "at least 1");
        if (MaxPrefillTokens < 0) throw Invalid(nameof(MaxPrefillTokens), MaxPrefillTokens, "0 or more");
        if (ContextLength < 0) throw Invalid(nameof(ContextLength), ContextLength, "0 or more");
        if (KvCacheMegabytes < 0) throw Invalid(nameof(KvCacheMegabytes), KvCacheMegabytes, "0 or more");
        if (KvCacheBlocks < 0) throw Invalid(nameof(KvCacheBlocks), KvCacheBlocks, "0 or more");
        if (Threads < 0) throw Invalid(nameof(Threads), Threads, "0 or more");
        // Every request passes through the queue, however briefly, so a limit of 0 would refuse them all.
        if (MaxWaiting < 1) throw Invalid(nameof(MaxWaiting), MaxWaiting, "at least 1");
    }

    private static ArgumentOutOfRangeException Invalid(string name, object value, string rule) => new(name, value, $"{name} must be {rule}");
}
