namespace Kiln.Training;

/// <summary>
/// What the backward pass rebuilds instead of keeping from the forward pass. Recomputation trades compute for
/// activation memory and never changes a bit: the forward ops are deterministic, so the rebuilt values are the
/// stored ones.
/// </summary>
[Flags]
public enum Recomputation
{
    None = 0,

    /// <summary>Attention probabilities [B, H, T, T] rebuilt per score row from the saved log-sum-exp.</summary>
    Attention = 1,

    /// <summary>
    /// Only each block's input (the residual stream) is kept; a block's forward runs again just before its backward,
    /// into one block's worth of activation buffers shared by all blocks.
    /// </summary>
    Block = 2,
}
