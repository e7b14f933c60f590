using Kiln.Models.Llama;

namespace Kiln.Serving;

/// <summary>
/// What one step computes: a chunk per scheduled sequence (decodes first, in admission order, then prompt chunks),
/// plus the sequences that lost their blocks this step. Plain data, so the policy is testable without a model.
/// </summary>
public sealed class SchedulerStep
{
    public SchedulerStep(IReadOnlyList<PagedChunk> chunks, IReadOnlyList<long> preempted)
    {
        Chunks = chunks;
        Preempted = preempted;
        foreach (var c in chunks)
            TokenCount += c.Tokens.Length;
    }

    public IReadOnlyList<PagedChunk> Chunks { get; }
    public IReadOnlyList<long> Preempted { get; }
    public int TokenCount { get; }
    public bool IsEmpty => Chunks.Count == 0;
}
