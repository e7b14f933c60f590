namespace Kiln.Benchmarking;

/// <summary>One test's repetitions: tokens per second of each, their mean and sample standard deviation (as llama-bench reports).</summary>
public sealed record InferenceMeasurement(InferenceTestKind Kind, int Tokens, IReadOnlyList<double> TokensPerSecond)
{
    /// <summary>llama-bench's label: pp512, tg128.</summary>
    public string Name => (Kind == InferenceTestKind.PromptProcessing ? "pp" : "tg") + Tokens;

    public double Mean => TokensPerSecond.Average();

    /// <summary>Sample standard deviation (n - 1); 0 for a single repetition.</summary>
    public double StandardDeviation
    {
        get
        {
            int n = TokensPerSecond.Count;
            if (n < 2)
                return 0;
            double mean = Mean;
            return Math.Sqrt(TokensPerSecond.Sum(x => (x - mean) * (x - mean)) / (n - 1));
        }
    }
}
