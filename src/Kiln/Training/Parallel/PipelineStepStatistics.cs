namespace Kiln.Training.Parallel;

/// <summary>
/// What one stage measured over one step's schedule (data read to the last backward; the gradient exchange and the
/// update are not in it). Idle time is wall time not spent in forward or backward passes: waiting for neighbours,
/// and the little bookkeeping around the exchanges.
/// </summary>
public sealed record PipelineStepStatistics(
    int Stage,
    double WallSeconds,
    double ComputeSeconds,
    int PeakInFlight,
    long PeakActivationBytes)
{
    public double IdleSeconds => Math.Max(0, WallSeconds - ComputeSeconds);

    /// <summary>Measured bubble: idle time / step time.</summary>
    public double IdleFraction => WallSeconds > 0 ? IdleSeconds / WallSeconds : 0;
}
