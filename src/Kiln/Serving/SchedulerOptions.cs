namespace Kiln.Serving;

/// <summary>Limits of one scheduler step.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Most sequences running (holding KV blocks) at once.</summary>
    public int MaxSequences { get; init; } = 16;

    /// <summary>Most tokens in one step: decode tokens plus prompt chunks.</summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>
    /// Most prompt tokens (prefill chunks, recomputes after preemption, embeddings) in a step that also decodes; 0 =
    /// only <see cref="MaxBatchTokens"/> limits them. On a CPU a step costs about its token count, so this bounds how
    /// much longer than a pure decode step any step is, i.e. the running streams' worst inter-token latency, at the
    /// price of spreading a new prompt over more steps (a longer time to its first token while others decode).
    /// </summary>
    public int MaxPrefillTokens { get; init; } = DefaultMaxPrefillTokens;

    /// <summary>The default of <see cref="MaxPrefillTokens"/> (<c>kiln serve --max-prefill-tokens</c>).</summary>
    /// <remarks>
    /// 4 rather than 8 (and 16 before that): with eight streams decoding a step then holds at most 12 tokens, about
    /// 1.5 pure decode steps. Measured on the 2-core reference machine with eight clients (docs/performance.md,
    /// "Serving", seventh session), the p99 inter-token latency over the single stream's stayed within 2.6× in all
    /// of 18 sweeps with 4, against up to 5.6× with 8, at the same throughput; the median time to the first token
    /// rose from about 1 s to about 1.9 s (Little's law: at a given throughput, shorter gaps mean a longer wait).
    /// Giving prompts more room while only one to three streams decode put a few long gaps back in.
    /// </remarks>
    public const int DefaultMaxPrefillTokens = 4;

    /// <summary>Reuse cached full blocks of earlier sequences with the same prefix.</summary>
    public bool PrefixCaching { get; init; } = true;

    public void Validate()
    {
        if (MaxSequences < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxSequences), MaxSequences, "must be at least 1");
        if (MaxBatchTokens < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxBatchTokens), MaxBatchTokens, "must be at least 1");
        if (MaxPrefillTokens < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxPrefillTokens), MaxPrefillTokens, "must be 0 or more");
    }
}
