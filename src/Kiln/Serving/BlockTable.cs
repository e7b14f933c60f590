namespace Kiln.Serving;

/// <summary>
/// The blocks of one sequence, in position order: position p lives in block <c>this[p / blockSize]</c> at offset
/// <c>p % blockSize</c>. Grows without reallocating once it has reached a sequence's longest length.
/// </summary>
public sealed class BlockTable
{
    private int[] _blocks;

    public BlockTable(int capacity = 8) => _blocks = new int[Math.Max(1, capacity)];

    public int Count { get; private set; }

    public int this[int index] => (uint)index < (uint)Count ? _blocks[index] : throw new ArgumentOutOfRangeException(nameof(index));

    /// <summary>The block ids, valid until the table next changes.</summary>
    public ReadOnlySpan<int> Blocks => _blocks.AsSpan(0, Count);

    public void Append(int block)
    {
        if (Count == _blocks.Length)
            Array.Resize(ref _blocks, _blocks.Length * 2);
        _blocks[Count++] = block;
    }

    internal void Replace(int index, int block) => _blocks[index] = block;

    public void Clear() => Count = 0;

    /// <summary>The block ids as a new array (the runner's input keeps its own copy).</summary>
    public int[] ToArray() => _blocks.AsSpan(0, Count).ToArray();
}
