namespace Kiln.Distributed.Planning;

/// <summary>
/// The planner's closed-form costs. Collectives are bandwidth-optimal rings (as NCCL and Open MPI use for large
/// payloads): an all-reduce over n ranks moves 2(n−1)/n of the payload through each rank's link in 2(n−1) steps,
/// a reduce-scatter or all-gather half of that. Memory follows the ZeRO paper with Kiln's precision: everything is
/// float32, so parameters 4Ψ, gradients 4Ψ and Adam's two moments 8Ψ (the paper's K = 8 here, not 12).
/// </summary>
public static class CostModel
{
    public const double BytesPerElement = 4;
    public const double ParameterBytes = 4, GradientBytes = 4, OptimizerBytes = 8;

    /// <summary>2(n−1)/n · bytes / bandwidth + 2(n−1) · latency; 0 for one rank.</summary>
    public static double RingAllReduceSeconds(double bytes, int ranks, double bandwidth, double latency) =>
        ranks <= 1 ? 0 : 2.0 * (ranks - 1) / ranks * bytes / bandwidth + 2.0 * (ranks - 1) * latency;

    /// <summary>(n−1)/n · bytes / bandwidth + (n−1) · latency, bytes being the whole (unsharded) tensor; 0 for one rank.</summary>
    public static double RingReduceScatterSeconds(double bytes, int ranks, double bandwidth, double latency) =>
        ranks <= 1 ? 0 : (double)(ranks - 1) / ranks * bytes / bandwidth + (ranks - 1) * latency;

    /// <summary>The same volume and steps as a reduce-scatter, in the other direction.</summary>
    public static double RingAllGatherSeconds(double bytes, int ranks, double bandwidth, double latency) =>
        RingReduceScatterSeconds(bytes, ranks, bandwidth, latency);

    public static double PointToPointSeconds(double bytes, double bandwidth, double latency) => bytes / bandwidth + latency;

    /// <summary>Idle share of a pipeline of <paramref name="stages"/> stages over <paramref name="microBatches"/> micro-batches: (P−1)/(M+P−1).</summary>
    public static double BubbleFraction(int stages, int microBatches) => (stages - 1.0) / (microBatches + stages - 1.0);

    /// <summary>
    /// Bytes of parameters, gradients and optimizer moments one rank holds for <paramref name="parameters"/>
    /// parameters under ZeRO <paramref name="zero"/> across <paramref name="dp"/> data-parallel ranks: stage 0
    /// 16Ψ, stage 1 4Ψ + 4Ψ + 8Ψ/N, stage 2 4Ψ + 12Ψ/N, stage 3 16Ψ/N.
    /// </summary>
    public static double ModelStateBytes(double parameters, int dp, int zero) => zero switch
    {
        0 => (ParameterBytes + GradientBytes + OptimizerBytes) * parameters,
        1 => (ParameterBytes + GradientBytes) * parameters + OptimizerBytes * parameters / dp,
        2 => ParameterBytes * parameters + (GradientBytes + OptimizerBytes) * parameters / dp,
        3 => (ParameterBytes + GradientBytes + OptimizerBytes) * parameters / dp,
        _ => throw new ArgumentOutOfRangeException(nameof(zero), zero, "ZeRO stages are 0 to 3"),
    };

    /// <summary>Training flops per token, forward and backward (the trainer's nanoGPT rule): 6Ψ for the products with weights, 12·layers·dim·T for attention's.</summary>
    public static double FlopsPerToken(double parameters, int layers, int dim, int seq) => 6.0 * parameters + 12.0 * layers * dim * seq;
}
