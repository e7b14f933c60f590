namespace Kiln.Training.Parallel;

/// <summary>
/// Bytes of model states one rank holds, as ZeRO counts them: parameters, gradients and the optimizer's moments.
/// Kiln trains in fp32 with no separate master copy, so the paper's mixed-precision 2Ψ + 2Ψ + KΨ (K = 12: fp32
/// master weights and two moments) becomes 4Ψ + 4Ψ + 8Ψ here: parameters 4 bytes, gradients 4, moments 8 (K = 8).
/// </summary>
public readonly record struct ModelStateMemory(long ParameterBytes, long GradientBytes, long MomentBytes)
{
    public long Total => ParameterBytes + GradientBytes + MomentBytes;

    /// <summary>
    /// The paper's formula in fp32 for Ψ parameters on N ranks with a shard of S elements per rank (Ψ/N when N
    /// divides every unit): stage 0 16Ψ, stage 1 4Ψ + 4Ψ + 8S, stage 2 4Ψ + 12S, stage 3 16S.
    /// </summary>
    public static ModelStateMemory Expected(ZeroStage stage, long parameters, long shard) => stage switch
    {
        ZeroStage.None => new(4 * parameters, 4 * parameters, 8 * parameters),
        ZeroStage.OptimizerStates => new(4 * parameters, 4 * parameters, 8 * shard),
        ZeroStage.Gradients => new(4 * parameters, 4 * shard, 8 * shard),
        ZeroStage.Parameters => new(4 * shard, 4 * shard, 8 * shard),
        _ => throw new ArgumentOutOfRangeException(nameof(stage), stage, null),
    };
}
