using Kiln.Inference.Sampling;

namespace Kiln.Serving;

/// <summary>One sequence to generate: prompt tokens, sampling, limits and optional constraints.</summary>
public sealed record EngineRequest
{
    /// <summary>Prompt token ids (BOS included when the model wants it).</summary>
    public required IReadOnlyList<int> Prompt { get; init; }

    /// <summary>Sampling parameters; their <see cref="SamplerOptions.Seed"/> makes sampling reproducible.</summary>
    public SamplerOptions Sampling { get; init; } = new();

    /// <summary>Most tokens to generate; the sequence also ends at an end-of-generation token or the context's end.</summary>
    public int MaxTokens { get; init; } = 256;

    /// <summary>How many of the most likely alternatives to report per token (0 = none). The chosen token's log-probability is always reported.</summary>
    public int TopLogprobs { get; init; }

    /// <summary>Restricts which tokens may be chosen (constrained decoding, e.g. JSON schema); null = unconstrained.</summary>
    public ITokenConstraint? Constraint { get; init; }

    /// <summary>When true, an end-of-generation token does not end the sequence (OpenAI's <c>ignore_eos</c>, used by load tests).</summary>
    public bool IgnoreEndOfGeneration { get; init; }
}
