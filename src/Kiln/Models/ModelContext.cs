namespace Kiln.Models;

/// <summary>
/// The part of <see cref="IModelContext"/> every architecture shares: the KV-cache position, rewinding, and
/// <see cref="Evaluate"/>'s checks and its split of the tokens into batches of at most <see cref="MaxBatch"/>.
/// An architecture supplies the forward pass of one batch and the classifier.
/// </summary>
public abstract class ModelContext : IModelContext
{
    public abstract int ContextLength { get; }

    /// <summary>The most tokens one forward pass takes; longer inputs are evaluated in batches of this size.</summary>
    public abstract int MaxBatch { get; }

    public abstract int VocabSize { get; }
    public abstract int ThreadCount { get; }

    /// <summary>Tokens already in the KV cache; the next token evaluated goes at this position.</summary>
    public int Position { get; protected set; }

    /// <summary>Forgets the sequence (the cache contents are simply overwritten later).</summary>
    public void Reset() => Position = 0;

    /// <summary>Drops cached tokens from <paramref name="position"/> on, e.g. to re-evaluate a shared prefix.</summary>
    public void Truncate(int position)
    {
        if (position < 0 || position > Position)
            throw new ArgumentOutOfRangeException(nameof(position));
        Position = position;
    }

    /// <summary>
    /// Appends <paramref name="tokens"/> to the sequence. With <paramref name="allLogits"/> false,
    /// <paramref name="logits"/> (VocabSize) receives the logits after the last token; with true it
    /// receives tokens.Length × VocabSize values, one row per token.
    /// </summary>
    public void Evaluate(ReadOnlySpan<int> tokens, Span<float> logits, bool allLogits = false)
    {
        if (tokens.IsEmpty)
            throw new ArgumentException("no tokens to evaluate", nameof(tokens));
        if (Position + tokens.Length > ContextLength)
            throw new ContextOverflowException(Position, tokens.Length, ContextLength);
        int vocab = VocabSize;
        if (logits.Length < (allLogits ? (long)tokens.Length * vocab : vocab))
            throw new ArgumentException("logits buffer too small", nameof(logits));
        foreach (int id in tokens)
        {
            if ((uint)id >= (uint)vocab)
                throw new ArgumentOutOfRangeException(nameof(tokens), id, $"token id outside the vocabulary of {vocab}");
        }

        for (int done = 0; done < tokens.Length;)
        {
            int n = Math.Min(MaxBatch, tokens.Length - done);
            bool last = done + n == tokens.Length;
            int outputs = allLogits ? n : last ? 1 : 0;
            EvaluateBatch(tokens.Slice(done, n), outputs);
            if (allLogits)
                ComputeLogits(n, logits.Slice(done * vocab, n * vocab));
            else if (last)
                ComputeLogits(1, logits[..vocab]);
            done += n;
        }
    }

    /// <summary>
    /// Runs one batch at <see cref="Position"/> through every layer and advances Position by its length. Only the
    /// last <paramref name="outputs"/> rows need logits; they must end up in rows [0, outputs) for
    /// <see cref="ComputeLogits"/>.
    /// </summary>
    protected abstract void EvaluateBatch(ReadOnlySpan<int> tokens, int outputs);

    /// <summary>The classifier for the first <paramref name="rows"/> rows left by <see cref="EvaluateBatch"/>.</summary>
    protected abstract void ComputeLogits(int rows, Span<float> logits);

    public abstract void Dispose();
}
