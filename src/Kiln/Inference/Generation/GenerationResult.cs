namespace Kiln.Inference.Generation;

public sealed record GenerationResult(
    int PromptTokens,
    int GeneratedTokens,
    TimeSpan PromptTime,
    TimeSpan GenerationTime,
    StopReason StopReason)
{
    public double PromptTokensPerSecond => PromptTime > TimeSpan.Zero ? PromptTokens / PromptTime.TotalSeconds : 0;

    /// <summary>Tokens per second of the decode loop; the first token comes from the prompt pass and is not counted.</summary>
    public double GenerationTokensPerSecond =>
        GenerationTime > TimeSpan.Zero && GeneratedTokens > 1 ? (GeneratedTokens - 1) / GenerationTime.TotalSeconds : 0;
}
