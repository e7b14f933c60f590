namespace Kiln.Training.Parallel;

/// <summary>Which model states ZeRO (Rajbhandari et al., 2020) shards across the data-parallel ranks.</summary>
public enum ZeroStage
{
    /// <summary>Plain data parallelism: every rank holds all parameters, gradients and moments.</summary>
    None = 0,

    /// <summary>Stage 1: the optimizer's moments.</summary>
    OptimizerStates = 1,

    /// <summary>Stage 2: moments and gradients.</summary>
    Gradients = 2,

    /// <summary>Stage 3: moments, gradients and the parameters themselves.</summary>
    Parameters = 3,
}
