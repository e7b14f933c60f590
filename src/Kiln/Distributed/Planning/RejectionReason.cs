namespace Kiln.Distributed.Planning;

/// <summary>Why the planner set a layout aside.</summary>
public enum RejectionReason
{
    HeadsNotDivisible,
    KvHeadsNotDivisible,
    FfnNotDivisible,
    LayersNotDivisible,
    BatchNotDivisibleByReplicas,
    BatchNotDivisibleByMicroBatches,
    OutOfMemory,

    /// <summary>A rule of <see cref="ParallelLayout.Validate"/> the planner does not check itself.</summary>
    InvalidLayout,
}
