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
    /// 8 rather than 16: with eight streams decoding a step then holds at most 16 tokens, about twice a pure decode
    /// step, instead of 24. Measured on the 2-core reference machine (docs/performance.md, sixth session), eight
    /// clients' p99 inter-token latency fell from ~5× to ~3.7× the single-stream p99 with no loss of throughput;
    /// a prompt arriving while others stream takes twice as many (but shorter) steps to its first token.
    /// </remarks>
    public const int DefaultMaxPrefillTokens = 8;

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
