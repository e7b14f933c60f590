namespace Kiln.Training.Parallel;

/// <summary>One entry of a stage's timetable: the forward or the backward pass of one micro-batch.</summary>
public readonly record struct PipelineOperation(bool IsBackward, int MicroBatch)
{
    public override string ToString() => $"{(IsBackward ? 'B' : 'F')}{MicroBatch}";
}
