namespace Kiln.Evaluation;

/// <summary>The outcome of <see cref="PerplexityEvaluator.Evaluate(ReadOnlySpan{int}, Action{PerplexityChunk}?, CancellationToken)"/>.</summary>
/// <param name="Perplexity">exp(mean negative log-likelihood of every scored token).</param>
/// <param name="Uncertainty">llama.cpp's "+/-": Perplexity × the standard error of the mean NLL; NaN with fewer than two scored tokens.</param>
/// <param name="MeanNegativeLogLikelihood">Natural-log NLL averaged over <paramref name="ScoredTokens"/>.</param>
/// <param name="ContextLength">Tokens per chunk.</param>
/// <param name="TokenCount">Tokens in the whole input, BOS included.</param>
/// <param name="ScoredTokens">Chunks × (ContextLength/2 − 1).</param>
/// <param name="RunningPerplexities">The running value after each chunk, as the progress reported it.</param>
/// <param name="Elapsed">Wall time of the evaluation (tokenization excluded).</param>
public sealed record PerplexityResult(
    double Perplexity,
    double Uncertainty,
    double MeanNegativeLogLikelihood,
    int ContextLength,
    int TokenCount,
    int ScoredTokens,
    IReadOnlyList<double> RunningPerplexities,
    TimeSpan Elapsed)
{
    public int Chunks => RunningPerplexities.Count;

    public double TokensPerSecond => Elapsed > TimeSpan.Zero ? Chunks * (double)ContextLength / Elapsed.TotalSeconds : 0;
}
