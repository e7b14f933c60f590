namespace Kiln.Serving;

/// <summary>
/// A piece of a completion's output: text now known to be free of stop strings, the tokens generated since the
/// previous chunk, and on the last chunk the reason the completion ended.
/// </summary>
public sealed record TextCompletionChunk(string Text, IReadOnlyList<GeneratedToken> Tokens, TextFinishReason? FinishReason);

/// <summary>Why a completion ended, in OpenAI's terms.</summary>
public enum TextFinishReason
{
    /// <summary>End-of-generation token or a stop string ("stop").</summary>
    Stop,
    /// <summary>Token limit or context end ("length").</summary>
    Length,
    /// <summary>The caller cancelled.</summary>
    Cancelled,
}
