using Kiln.Inference.Sampling;

namespace Kiln.Inference.Generation;

public sealed record GenerationOptions
{
    /// <summary>Tokens to generate at most; negative = until end of sequence or a full context.</summary>
    public int MaxTokens { get; init; } = -1;

    public SamplerOptions Sampler { get; init; } = new();

    /// <summary>Texts that end generation; they are not emitted.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Keep going past end-of-generation tokens (benchmarks).</summary>
    public bool IgnoreEndOfSequence { get; init; }
}
