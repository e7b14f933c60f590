namespace Kiln.Training.Parallel;

/// <summary>
/// One rank's wall time in one optimizer step: total, time spent waiting in communication calls (all-reduces,
/// gathers, sends and receives that had not completed), and, for a pipeline stage, time idle waiting for a neighbour.
/// </summary>
public readonly record struct ParallelStepTimes(TimeSpan Total, TimeSpan Communication, TimeSpan PipelineIdle)
{
    public double CommunicationFraction => Total > TimeSpan.Zero ? Communication / Total : 0;
    public double IdleFraction => Total > TimeSpan.Zero ? PipelineIdle / Total : 0;
}
