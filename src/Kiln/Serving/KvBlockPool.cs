namespace Kiln.Serving;

/// <summary>
/// Bookkeeping of a paged KV cache: which of a fixed number of blocks are free, how many block tables reference
/// each one, and which full blocks hold a known prefix (the automatic prefix cache). It owns no tensor memory:
/// block ids index the storage (<see cref="Kiln.Models.Llama.PagedKvCache"/>). Not thread-safe; the engine's loop
/// thread is its only user.
/// </summary>
/// <remarks>
/// A block with no references is either empty (on the free list) or cached (its hash is known): cached blocks wait
/// in least-recently-released order and are taken back, hash forgotten, only when the free list is empty. So a
/// prefix stays reusable until memory is actually needed, as in vLLM's block pool.
/// </remarks>
public sealed class KvBlockPool
{
    private readonly int[] _refCount;
    private readonly int[] _freeStack;
    private int _freeCount;

    // Unreferenced cached blocks, a doubly linked list through the two arrays, oldest release at the head.
    private readonly int[] _lruPrev;
    private readonly int[] _lruNext;
    private int _lruHead = -1;
    private int _lruTail = -1;
    private int _lruCount;

    private readonly BlockHash[] _hashOf;
    private readonly bool[] _hashed;
    private readonly Dictionary<BlockHash, int> _cached = [];

    public KvBlockPool(int blockCount, int blockSize = DefaultBlockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        BlockCount = blockCount;
        BlockSize = blockSize;
        _refCount = new int[blockCount];
        _freeStack = new int[blockCount];
        _lruPrev = new int[blockCount];
        _lruNext = new int[blockCount];
        _hashOf = new BlockHash[blockCount];
        _hashed = new bool[blockCount];
        // Lowest ids first out, which keeps tests readable and early blocks warm.
        for (int i = 0; i < blockCount; i++)
            _freeStack[i] = blockCount - 1 - i;
        _freeCount = blockCount;
    }

    /// <summary>Tokens per block (vLLM's default, and a multiple of the attention kernels' 8 lanes).</summary>
    public const int DefaultBlockSize = 16;

    public int BlockCount { get; }
    public int BlockSize { get; }

    /// <summary>Blocks that an allocation can take now: empty ones plus unreferenced cached ones.</summary>
    public int AvailableBlocks => _freeCount + _lruCount;

    /// <summary>Blocks referenced by at least one block table.</summary>
    public int UsedBlocks => BlockCount - AvailableBlocks;

    /// <summary>Full blocks whose prefix hash is registered (referenced or not).</summary>
    public int CachedBlocks => _cached.Count;

    public int RefCount(int block) => _refCount[block];

    /// <summary>Takes a block for writing (reference count 1), or returns −1 when none is available.</summary>
    public int Allocate()
    {
        int block;
        if (_freeCount > 0)
        {
            block = _freeStack[--_freeCount];
        }
        else if (_lruCount > 0)
        {
            block = _lruHead;
            LruRemove(block);
            _cached.Remove(_hashOf[block]);
            _hashed[block] = false;
        }
        else
        {
            return -1;
        }
        _refCount[block] = 1;
        return block;
    }

    /// <summary>Adds a reference to a block another table already holds (sharing a prefix, forking a sequence).</summary>
    public void AddReference(int block)
    {
        if (_refCount[block] <= 0)
            throw new InvalidOperationException($"block {block} is not allocated");
        _refCount[block]++;
    }

    /// <summary>Drops one reference; at zero the block becomes free, or evictable when it holds a cached prefix.</summary>
    public void Release(int block)
    {
        if (_refCount[block] <= 0)
            throw new InvalidOperationException($"block {block} is released more often than it was referenced");
        if (--_refCount[block] > 0)
            return;
        if (_hashed[block])
            LruAppend(block);
        else
            _freeStack[_freeCount++] = block;
    }

    /// <summary>
    /// Looks a full block's prefix hash up; on a hit the block gains a reference (leaving the evictable list if it
    /// was there) and is returned, otherwise −1.
    /// </summary>
    public int TryReuse(BlockHash hash)
    {
        if (!_cached.TryGetValue(hash, out int block))
            return -1;
        if (_refCount[block] == 0)
            LruRemove(block);
        _refCount[block]++;
        return block;
    }

    /// <summary>
    /// Records that <paramref name="block"/> now holds the full block whose prefix hash is <paramref name="hash"/>.
    /// When another block already holds that prefix the first one stays the cached copy (this one is freed as usual).
    /// </summary>
    public void Register(int block, BlockHash hash)
    {
        if (_refCount[block] <= 0)
            throw new InvalidOperationException($"block {block} is not allocated");
        if (_hashed[block] || !_cached.TryAdd(hash, block))
            return;
        _hashOf[block] = hash;
        _hashed[block] = true;
    }

    /// <summary>Whether a prefix hash is cached (no reference taken; for tests and look-ahead).</summary>
    public bool Contains(BlockHash hash) => _cached.ContainsKey(hash);

    /// <summary>
    /// Makes the table's block <paramref name="index"/> safe to write: a block shared with other tables is replaced by
    /// a private one. Returns the source block whose contents must be copied into the new one, or −1 when the block
    /// was already private; throws <see cref="InvalidOperationException"/> if no block is available (callers check
    /// <see cref="AvailableBlocks"/> first).
    /// </summary>
    public int CopyOnWrite(BlockTable table, int index)
    {
        int block = table[index];
        if (_refCount[block] == 1)
        {
            // A private block that is about to change no longer holds the prefix its hash names.
            Unregister(block);
            return -1;
        }
        int copy = Allocate();
        if (copy < 0)
            throw new InvalidOperationException("no free KV block for copy-on-write");
        Release(block);
        table.Replace(index, copy);
        return block;
    }

    /// <summary>Releases every block of a table and empties it.</summary>
    public void ReleaseAll(BlockTable table)
    {
        for (int i = table.Count - 1; i >= 0; i--)
            Release(table[i]);
        table.Clear();
    }

    /// <summary>Gives <paramref name="target"/> the same blocks as <paramref name="source"/>, shared (copy-on-write).</summary>
    public void Fork(BlockTable source, BlockTable target)
    {
        if (target.Count != 0)
            throw new ArgumentException("the target table must be empty", nameof(target));
        for (int i = 0; i < source.Count; i++)
        {
            AddReference(source[i]);
            target.Append(source[i]);
        }
    }

    private void Unregister(int block)
    {
        if (!_hashed[block])
            return;
        _cached.Remove(_hashOf[block]);
        _hashed[block] = false;
    }

    private void LruAppend(int block)
    {
        _lruPrev[block] = _lruTail;
        _lruNext[block] = -1;
        if (_lruTail >= 0)
            _lruNext[_lruTail] = block;
        else
            _lruHead = block;
        _lruTail = block;
        _lruCount++;
    }

    private void LruRemove(int block)
    {
        int prev = _lruPrev[block], next = _lruNext[block];
        if (prev >= 0) _lruNext[prev] = next; else _lruHead = next;
        if (next >= 0) _lruPrev[next] = prev; else _lruTail = prev;
        _lruCount--;
    }
}
