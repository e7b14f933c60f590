namespace Kiln.Evaluation;

/// <summary>
/// Progress after one chunk: llama-perplexity prints it as "[Number]RunningPerplexity" (%.4f).
/// </summary>
/// <param name="Number">1-based index of the chunk just scored.</param>
/// <param name="Total">Chunks the evaluation will score.</param>
/// <param name="RunningPerplexity">exp(mean negative log-likelihood over chunks 1..Number).</param>
public readonly record struct PerplexityChunk(int Number, int Total, double RunningPerplexity);
