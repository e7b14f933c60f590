namespace Kiln.Inference.Generation;

public enum StopReason
{
    EndOfSequence,
    MaxTokens,
    StopString,
    ContextFull,
    Cancelled,
}
