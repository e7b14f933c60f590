namespace Kiln.Serving;

/// <summary>
/// A sequence as the scheduler sees it: all its tokens so far (prompt, then generated), how many of them have
/// their keys and values in the cache, and its blocks. The front end appends each sampled token.
/// </summary>
public sealed class ScheduledSequence
{
    private readonly List<int> _tokens;
    private readonly List<BlockHash> _blockHashes = [];
    private readonly int _blockSize;

    internal ScheduledSequence(long id, IReadOnlyList<int> prompt, int blockSize, bool usePrefixCache, bool wantsHidden)
    {
        Id = id;
        _blockSize = blockSize;
        _tokens = new List<int>(prompt.Count + 16);
        _tokens.AddRange(prompt);
        PromptLength = prompt.Count;
        UsesPrefixCache = usePrefixCache;
        WantsHidden = wantsHidden;
    }

    public long Id { get; }
    public int PromptLength { get; }
    public IReadOnlyList<int> Tokens => _tokens;
    public int TokenCount => _tokens.Count;

    /// <summary>Tokens whose keys and values are in the cache (the next chunk starts here).</summary>
    public int ComputedTokens { get; internal set; }

    public BlockTable Blocks { get; } = new();
    public SequenceStatus Status { get; internal set; } = SequenceStatus.Waiting;

    /// <summary>Times this sequence lost its blocks to a preemption.</summary>
    public int Preemptions { get; internal set; }

    /// <summary>Looks its prompt up in the prefix cache on admission (off for embeddings, whose every row is needed).</summary>
    public bool UsesPrefixCache { get; }

    /// <summary>Wants the hidden state of every token (embedding) instead of next-token logits.</summary>
    public bool WantsHidden { get; }

    /// <summary>True when every token is computed: the sequence waits for its next token (or is done).</summary>
    public bool IsCaughtUp => ComputedTokens == _tokens.Count;

    public void Append(int token) => _tokens.Add(token);

    internal List<int> TokenList => _tokens;

    /// <summary>Prefix hash of full block <paramref name="index"/>, computed once and remembered.</summary>
    internal BlockHash HashOfBlock(int index)
    {
        while (_blockHashes.Count <= index)
        {
            int i = _blockHashes.Count;
            var parent = i == 0 ? BlockHash.Root : _blockHashes[i - 1];
            _blockHashes.Add(BlockHash.Chain(parent, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens).Slice(i * _blockSize, _blockSize)));
        }
        return _blockHashes[index];
    }

    /// <summary>The scheduler step that last gave this sequence a chunk (it must not be preempted within that step).</summary>
    internal long ScheduledInStep { get; set; }

    /// <summary>Full blocks already registered with the pool's prefix cache.</summary>
    internal int RegisteredBlocks { get; set; }
}

public enum SequenceStatus
{
    Waiting,
    Running,
    Finished,
}
