namespace Kiln.Distributed.Planning;

/// <summary>Every layout the planner considered: the fitting ones fastest first, the others with their reasons.</summary>
public sealed record PlannerResult(IReadOnlyList<PlanEstimate> Accepted, IReadOnlyList<RejectedPlan> Rejected)
{
    public int Considered => Accepted.Count + Rejected.Count;

    /// <summary>Rejections by reason, most frequent first, each with its count and the first example.</summary>
    public IReadOnlyList<(RejectionReason Reason, int Count, RejectedPlan Example)> RejectionSummary =>
        Rejected.GroupBy(r => r.Reason)
            .Select(g => (g.Key, g.Count(), g.First()))
            .OrderByDescending(g => g.Item2).ThenBy(g => g.Key)
            .ToList();
}
