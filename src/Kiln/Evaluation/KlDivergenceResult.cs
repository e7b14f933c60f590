namespace Kiln.Evaluation;

/// <summary>
/// A model's distributions against a base model's (llama-perplexity --kl-divergence): values are the
/// mean and its standard error, as llama.cpp computes them; KLD is KL(base ‖ model) per scored token.
/// </summary>
public sealed record KlDivergenceResult(
    int Tokens,
    (double Value, double Error) Perplexity,
    (double Value, double Error) BasePerplexity,
    double LogPerplexityCorrelation,
    (double Value, double Error) LogPerplexityRatio,
    (double Value, double Error) PerplexityDifference,
    (double Value, double Error) MeanKld,
    double MaxKld,
    double Kld99_9,
    double Kld99,
    double MedianKld,
    double Kld10,
    double Kld5,
    double Kld1,
    double MinKld,
    (double Value, double Error) MeanProbabilityDifference,
    (double Value, double Error) RmsProbabilityDifference,
    double MaxProbabilityDifference,
    double MedianProbabilityDifference,
    double MinProbabilityDifference,
    (double Value, double Error) SameTop);
