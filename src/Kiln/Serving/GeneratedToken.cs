namespace Kiln.Serving;

/// <summary>One step of a sequence's output.</summary>
/// <param name="Token">The token id, or -1 when the item only reports the end.</param>
/// <param name="Logprob">Log-probability of <paramref name="Token"/> under the model's distribution (after penalties, before truncation).</param>
/// <param name="TopLogprobs">The most likely alternatives with their log-probabilities, most likely first; empty unless requested.</param>
/// <param name="FinishReason">Set on the last item only.</param>
public sealed record GeneratedToken(int Token, float Logprob, IReadOnlyList<TokenLogprob> TopLogprobs, EngineFinishReason? FinishReason);

/// <summary>A token id with its log-probability.</summary>
public readonly record struct TokenLogprob(int Token, float Logprob);

/// <summary>Why a sequence ended.</summary>
public enum EngineFinishReason
{
    /// <summary>The model produced an end-of-generation token (not included in the output).</summary>
    EndOfGeneration,
    /// <summary><see cref="EngineRequest.MaxTokens"/> reached.</summary>
    Length,
    /// <summary>The context is full.</summary>
    ContextFull,
    /// <summary>The caller cancelled.</summary>
    Cancelled,
}
