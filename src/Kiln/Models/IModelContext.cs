namespace Kiln.Models;

/// <summary>
/// One sequence being run through a loaded model, whatever its architecture: what text generation, chat and
/// perplexity need (evaluate tokens into logits, the KV-cache position, rewinding). Each architecture's context
/// (<see cref="Llama.LlamaContext"/>, <see cref="Gpt2.Gpt2Context"/>) implements it through <see cref="ModelContext"/>.
/// </summary>
public interface IModelContext : IDisposable
{
    /// <summary>Positions the KV cache holds.</summary>
    int ContextLength { get; }

    int VocabSize { get; }
    int ThreadCount { get; }

    /// <summary>Tokens already in the KV cache; the next token evaluated goes at this position.</summary>
    int Position { get; }

    /// <summary>Forgets the sequence.</summary>
    void Reset();

    /// <summary>Drops cached tokens from <paramref name="position"/> on.</summary>
    void Truncate(int position);

    /// <summary>
    /// Appends <paramref name="tokens"/> to the sequence. With <paramref name="allLogits"/> false,
    /// <paramref name="logits"/> (VocabSize) receives the logits after the last token; with true it
    /// receives tokens.Length × VocabSize values, one row per token.
    /// </summary>
    void Evaluate(ReadOnlySpan<int> tokens, Span<float> logits, bool allLogits = false);
}
