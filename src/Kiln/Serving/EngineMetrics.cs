namespace Kiln.Serving;

/// <summary>Counters of a serving engine at one instant (what <c>/metrics</c> exports).</summary>
public sealed record EngineMetrics
{
    public int RunningSequences { get; init; }
    public int WaitingSequences { get; init; }
    public int KvBlocksUsed { get; init; }
    public int KvBlocksTotal { get; init; }
    public long PrefixCacheQueries { get; init; }
    public long PrefixCacheHits { get; init; }
    public long PromptTokens { get; init; }
    public long GeneratedTokens { get; init; }
    public long Preemptions { get; init; }
}
