namespace Kiln.Serving;

/// <summary>Limits of one scheduler step.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Most sequences running (holding KV blocks) at once.</summary>
    public int MaxSequences { get; init; } = 16;

    /// <summary>Most tokens in one step: decode tokens plus prompt chunks.</summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>Reuse cached full blocks of earlier sequences with the same prefix.</summary>
    public bool PrefixCaching { get; init; } = true;

    public void Validate()
    {
        if (MaxSequences < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxSequences), MaxSequences, "must be at least 1");
        if (MaxBatchTokens < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxBatchTokens), MaxBatchTokens, "must be at least 1");
    }
}
