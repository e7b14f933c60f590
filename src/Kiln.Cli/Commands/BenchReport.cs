namespace Kiln.Cli.Commands;

/// <summary>
/// Everything kiln bench measured, in the shape --json prints it (snake_case names): the model, one entry
/// per test, and the machine's read bandwidth when it was measured. <c>FlashAttention</c>: measured with -fa.
/// </summary>
internal sealed record BenchReport(
    BenchReport.ModelInfo? Model,
    int Threads,
    int Repetitions,
    bool FlashAttention,
    IReadOnlyList<BenchReport.TestResult> Tests,
    BenchReport.MemoryResult? Memory)
{
    /// <param name="Source">"synthetic" (random weights built in memory) or "file".</param>
    /// <param name="WeightType">The --type of a synthetic model; for a file, its matrix types by bytes, largest first ("q4_k+q6_k").</param>
    /// <param name="SizeBytes">Bytes of all tensors (llama-bench's model size).</param>
    /// <param name="Parameters">Elements of all tensors.</param>
    /// <param name="WeightBytesPerToken">Weight bytes one generated token reads (every matrix once).</param>
    internal sealed record ModelInfo(
        string Name, string Source, string? Path, string Architecture, string WeightType,
        long SizeBytes, double SizeGib, long Parameters, long WeightBytesPerToken);

    /// <param name="Name">pp512, tg128 …</param>
    /// <param name="Kind">"pp" (prompt processing) or "tg" (text generation).</param>
    /// <param name="WeightBandwidthGbps">tg only: weight bytes per token × mean tokens/s, in 10^9 bytes/s.</param>
    /// <param name="ReadBandwidthFraction">tg only: <paramref name="WeightBandwidthGbps"/> over the best measured read bandwidth.</param>
    internal sealed record TestResult(
        string Name, string Kind, int Tokens, double TokensPerSecond, double TokensPerSecondStddev,
        IReadOnlyList<double> Samples, double? WeightBandwidthGbps, double? ReadBandwidthFraction);

    /// <param name="Quick">True when measured briefly for the tg comparison rather than asked for with --memory.</param>
    internal sealed record MemoryResult(
        long Bytes, int Passes, int Threads, double BestGbps, double MedianGbps, IReadOnlyList<double> PassGbps, bool Quick);
}
