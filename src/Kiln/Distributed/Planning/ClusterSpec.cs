using Kiln.Training;

namespace Kiln.Distributed.Planning;

/// <summary>
/// The machines a plan is for: identical ranks, each with its memory and peak arithmetic, joined by links of one
/// bandwidth and one latency (the model does not tell a node's NVLink from the network between nodes).
/// </summary>
public sealed record ClusterSpec
{
    public required int Ranks { get; init; }
    public required double MemoryBytesPerRank { get; init; }

    /// <summary>Bytes per second one rank sends (and receives) at once.</summary>
    public required double BandwidthBytesPerSecond { get; init; }

    public required double PeakFlopsPerRank { get; init; }

    /// <summary>Share of the peak the trainer's products reach (model FLOPs utilization).</summary>
    public double Efficiency { get; init; } = 0.5;

    /// <summary>Cost of one message beside its bytes: each ring step, each point-to-point send.</summary>
    public double LatencySeconds { get; init; } = 10e-6;

    public double SustainedFlopsPerRank => PeakFlopsPerRank * Efficiency;

    /// <summary>Throws <see cref="TrainingConfigException"/> naming the first figure that is not usable.</summary>
    public void Validate()
    {
        if (Ranks < 1)
            throw new TrainingConfigException($"ranks must be at least 1 (got {Ranks})");
        Positive(MemoryBytesPerRank, "memory per rank");
        Positive(BandwidthBytesPerSecond, "bandwidth");
        Positive(PeakFlopsPerRank, "flops");
        if (!(Efficiency > 0 && Efficiency <= 1))
            throw new TrainingConfigException($"efficiency must be above 0 and at most 1 (got {Efficiency})");
        if (!(LatencySeconds >= 0) || !double.IsFinite(LatencySeconds))
            throw new TrainingConfigException($"latency must be zero or positive (got {LatencySeconds})");
    }

    private static void Positive(double value, string name)
    {
        if (!(value > 0) || !double.IsFinite(value))
            throw new TrainingConfigException($"{name} must be a positive number (got {value})");
    }
}
