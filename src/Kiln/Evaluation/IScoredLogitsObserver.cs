namespace Kiln.Evaluation;

/// <summary>
/// Sees the logits <see cref="PerplexityEvaluator"/> scores: after each chunk, the rows at positions n/2 … n−2
/// and the token each row predicts. Used to save a base model's distributions and to compare against them
/// (llama-perplexity's --kl-divergence-base / --kl-divergence).
/// </summary>
public interface IScoredLogitsObserver
{
    /// <param name="chunk">0-based chunk index.</param>
    /// <param name="logits">targets.Length rows of <paramref name="vocab"/> logits, row-major.</param>
    /// <param name="targets">The next token for each row.</param>
    /// <param name="vocab">Logits per row.</param>
    void OnChunk(int chunk, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab);
}
