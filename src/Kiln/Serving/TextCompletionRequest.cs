using Kiln.Inference.Sampling;
using Kiln.Serving.Constraints;
using Kiln.Tokenizers;

namespace Kiln.Serving;

/// <summary>
/// A text-level generation request, what front ends (the HTTP server, <see cref="KilnChatClient"/>) build from their
/// own request shapes: the engine's token-level request plus stop strings and an optional JSON schema.
/// </summary>
public sealed record TextCompletionRequest
{
    /// <summary>Prompt token ids (BOS included when the model wants it).</summary>
    public required IReadOnlyList<int> Prompt { get; init; }

    public SamplerOptions Sampling { get; init; } = new();

    public int MaxTokens { get; init; } = 256;

    /// <summary>Texts that end the completion; they and what follows are left out of the output.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Alternatives to report per token (0 = only the chosen token's log-probability).</summary>
    public int TopLogprobs { get; init; }

    /// <summary>When set, the output is constrained to JSON text of this schema.</summary>
    public JsonSchemaNode? JsonSchema { get; init; }

    public bool IgnoreEndOfGeneration { get; init; }

    /// <summary>The engine request; each call makes a fresh constraint (a constraint belongs to one sequence).</summary>
    public EngineRequest ToEngineRequest(Tokenizer tokenizer) => new()
    {
        Prompt = Prompt,
        Sampling = Sampling,
        MaxTokens = MaxTokens,
        TopLogprobs = TopLogprobs,
        Constraint = JsonSchema is null ? null : new JsonTokenConstraint(tokenizer, JsonSchema),
        IgnoreEndOfGeneration = IgnoreEndOfGeneration,
    };
}
