namespace Kiln.Models.Llama;

/// <summary>
/// One sequence's share of a batched forward step: <see cref="Tokens"/> go at positions
/// <see cref="StartPosition"/>, <see cref="StartPosition"/> + 1, … and attend to every earlier position of the
/// sequence through <see cref="BlockTable"/> (position p lives at slot <c>BlockTable[p / blockSize] · blockSize +
/// p % blockSize</c>). Plain data: the scheduler makes it, the runner reads it.
/// </summary>
public sealed record PagedChunk(long SequenceId, int[] Tokens, int StartPosition, int[] BlockTable, PagedOutput Output)
{
    /// <summary>Position after the chunk's last token.</summary>
    public int EndPosition => StartPosition + Tokens.Length;

    /// <summary>The cache slot of a position of this sequence.</summary>
    public int Slot(int position, int blockSize) => BlockTable[position / blockSize] * blockSize + position % blockSize;
}

/// <summary>What the runner returns for a chunk.</summary>
public enum PagedOutput
{
    /// <summary>Nothing (a prompt chunk that is not the prompt's last).</summary>
    None,

    /// <summary>The logits after the chunk's last token.</summary>
    Logits,

    /// <summary>The final normed hidden state of every token of the chunk (embeddings).</summary>
    Hidden,
}
