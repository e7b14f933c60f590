using Kiln.Compute;

namespace Kiln.Models.Gpt2;

/// <summary>The weights of one GPT-2 block: matrices viewed in place in the model file, norms and biases as floats.</summary>
public sealed class Gpt2Layer
{
    public required float[] AttentionNormWeight { get; init; }
    public required float[] AttentionNormBias { get; init; }
    public required WeightMatrix Qkv { get; init; }
    public required float[] QkvBias { get; init; }
    public required WeightMatrix Output { get; init; }
    public required float[] OutputBias { get; init; }
    public required float[] FeedForwardNormWeight { get; init; }
    public required float[] FeedForwardNormBias { get; init; }
    public required WeightMatrix Up { get; init; }
    public required float[] UpBias { get; init; }
    public required WeightMatrix Down { get; init; }
    public required float[] DownBias { get; init; }
}
