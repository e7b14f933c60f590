namespace Kiln.Distributed.Planning;

/// <summary>Fixes some of the planner's choices (null: any), e.g. to price the layout a practice would pick.</summary>
public sealed record LayoutConstraints
{
    public int? Dp { get; init; }
    public int? Tp { get; init; }
    public int? Pp { get; init; }
    public int? Zero { get; init; }
    public int? MicroBatches { get; init; }
    public PipelineSchedule? Schedule { get; init; }

    public static readonly LayoutConstraints None = new();

    public bool Admits(ParallelLayout layout) =>
        (Dp ?? layout.Dp) == layout.Dp && (Tp ?? layout.Tp) == layout.Tp && (Pp ?? layout.Pp) == layout.Pp
        && (Zero ?? layout.Zero) == layout.Zero && (MicroBatches ?? layout.MicroBatches) == layout.MicroBatches
        && (Schedule ?? layout.Schedule) == layout.Schedule;
}
