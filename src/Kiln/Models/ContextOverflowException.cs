namespace Kiln.Models;

/// <summary>More tokens than the context holds.</summary>
public sealed class ContextOverflowException(int position, int count, int contextLength)
    : Exception($"{position + count} tokens do not fit in the context of {contextLength} (at position {position}, {count} more requested)")
{
    public int ContextLength { get; } = contextLength;
}
