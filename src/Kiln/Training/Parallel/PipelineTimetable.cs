using Kiln.Distributed;

namespace Kiln.Training.Parallel;

/// <summary>
/// The order in which one pipeline stage runs its micro-batches' forward and backward passes. Backward passes go in
/// micro-batch order under both schedules, so each stage adds its gradients in the order single-process gradient
/// accumulation does.
/// </summary>
public static class PipelineTimetable
{
    /// <summary>
    /// GPipe: all M forwards, then all M backwards (M micro-batches' activations alive at once). 1F1B (PipeDream-flush):
    /// P − stage − 1 warm-up forwards, then alternately one forward and one backward, then the remaining backwards;
    /// at most P − stage micro-batches are between their forward and their backward.
    /// </summary>
    public static PipelineOperation[] For(PipelineSchedule schedule, int stage, int stages, int microBatches)
    {
        if (stages < 1 || (uint)stage >= (uint)stages)
            throw new ArgumentOutOfRangeException(nameof(stage), $"stage {stage} of {stages}");
        ArgumentOutOfRangeException.ThrowIfLessThan(microBatches, 1);
        var ops = new List<PipelineOperation>(2 * microBatches);
        switch (schedule)
        {
            case PipelineSchedule.GPipe:
                for (int m = 0; m < microBatches; m++)
                    ops.Add(new PipelineOperation(false, m));
                for (int m = 0; m < microBatches; m++)
                    ops.Add(new PipelineOperation(true, m));
                break;
            case PipelineSchedule.OneFOneB:
                int warmup = Math.Min(stages - stage - 1, microBatches);
                for (int m = 0; m < warmup; m++)
                    ops.Add(new PipelineOperation(false, m));
                for (int m = warmup; m < microBatches; m++)
                {
                    ops.Add(new PipelineOperation(false, m));
                    ops.Add(new PipelineOperation(true, m - warmup));
                }
                for (int m = microBatches - warmup; m < microBatches; m++)
                    ops.Add(new PipelineOperation(true, m));
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(schedule), schedule, "unknown pipeline schedule");
        }
        return ops.ToArray();
    }

    /// <summary>Micro-batches whose activations a stage holds at once under a timetable: the most between forward and backward.</summary>
    public static int MostInFlight(ReadOnlySpan<PipelineOperation> timetable)
    {
        int now = 0, most = 0;
        foreach (var op in timetable)
        {
            now += op.IsBackward ? -1 : 1;
            most = Math.Max(most, now);
        }
        return most;
    }

    /// <summary>
    /// The idle share of a step when every stage's forward and backward take equal time: (P − 1)/(M + P − 1), the same
    /// for GPipe and 1F1B (1F1B saves memory, not time).
    /// </summary>
    public static double TheoreticalBubble(int stages, int microBatches) => (stages - 1.0) / (microBatches + stages - 1.0);
}
