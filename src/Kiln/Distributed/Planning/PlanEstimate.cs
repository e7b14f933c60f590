namespace Kiln.Distributed.Planning;

/// <summary>
/// What the cost model expects of one layout, per optimizer step. Times are those of the slowest pipeline stage
/// (it sets the pace); memory is the fullest rank's.
/// </summary>
public sealed record PlanEstimate
{
    public required ParallelLayout Layout { get; init; }

    /// <summary>Sequences in one micro-batch of one replica: batch / (dp · micro-batches).</summary>
    public required long MicroBatchSequences { get; init; }

    public required double StepSeconds { get; init; }
    public required double TokensPerSecond { get; init; }

    /// <summary>Arithmetic alone, all micro-batches of the slowest stage.</summary>
    public required double ComputeSeconds { get; init; }

    /// <summary>Tensor-parallel all-reduces on the critical path, all micro-batches.</summary>
    public required double TensorParallelSeconds { get; init; }

    /// <summary>Activation and gradient sends between neighbouring stages, all micro-batches.</summary>
    public required double PipelineSendSeconds { get; init; }

    /// <summary>(P−1)/(M+P−1).</summary>
    public required double BubbleFraction { get; init; }

    /// <summary>Time idle in the pipeline's fill and drain: (P−1) micro-batch slots.</summary>
    public required double BubbleSeconds { get; init; }

    /// <summary>Data-parallel (and ZeRO) traffic in all, hidden or not.</summary>
    public required double DataParallelSeconds { get; init; }

    /// <summary>The part of <see cref="DataParallelSeconds"/> not hidden behind the backward pass (or forward, for ZeRO-3's gathers).</summary>
    public required double DataParallelExposedSeconds { get; init; }

    /// <summary>Parameters, gradients and optimizer moments on the fullest rank (ZeRO's formulas).</summary>
    public required double ModelStateBytes { get; init; }

    /// <summary>ZeRO-3's gathered parameters and gradients of the unit in use (a layer, the embedding or the head).</summary>
    public required double GatherBufferBytes { get; init; }

    public required double ActivationBytes { get; init; }

    /// <summary>Micro-batches whose activations the fullest stage holds at once: GPipe M, 1F1B min(M, P − stage).</summary>
    public required int MicroBatchesInFlight { get; init; }

    /// <summary>The pipeline stage with the most memory.</summary>
    public required int FullestStage { get; init; }

    public double MemoryBytes => ModelStateBytes + GatherBufferBytes + ActivationBytes;

    /// <summary>Model flops utilization: the trainer's flops per token × tokens/s over every rank's peak.</summary>
    public required double Mfu { get; init; }
}
