namespace Kiln.Distributed.Planning;

/// <summary>A layout the planner set aside, with the reason and the figures behind it.</summary>
public sealed record RejectedPlan(ParallelLayout Layout, RejectionReason Reason, string Detail)
{
    /// <summary>Short form for summaries: "out of memory", "heads not divisible by tp" ….</summary>
    public static string Describe(RejectionReason reason) => reason switch
    {
        RejectionReason.HeadsNotDivisible => "heads not divisible by tp",
        RejectionReason.KvHeadsNotDivisible => "KV heads not divisible by tp",
        RejectionReason.FfnNotDivisible => "feed-forward width not divisible by tp",
        RejectionReason.LayersNotDivisible => "layers not divisible by pp",
        RejectionReason.BatchNotDivisibleByReplicas => "batch not divisible by dp",
        RejectionReason.BatchNotDivisibleByMicroBatches => "batch per replica not divisible by micro-batches",
        RejectionReason.OutOfMemory => "out of memory",
        RejectionReason.InvalidLayout => "invalid layout",
        _ => reason.ToString(),
    };
}
