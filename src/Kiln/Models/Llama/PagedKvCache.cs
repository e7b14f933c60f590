using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace Kiln.Models.Llama;

/// <summary>
/// Key and value storage of a paged KV cache: <see cref="BlockCount"/> blocks of <see cref="BlockSize"/> positions,
/// each block holding every layer ([block][layer][offset][kvDim]) so that a whole block copies as one range
/// (copy-on-write). Rows are F16, F32 or Q8_0 and rounded exactly as <see cref="KvCache"/> rounds them. Which
/// block belongs to which sequence is the caller's business (<c>Kiln.Serving.KvBlockPool</c>); a position is
/// addressed by its slot, <c>block · BlockSize + offset</c>. Native memory, for the reasons <see cref="KvCache"/> gives.
/// </summary>
public sealed unsafe class PagedKvCache : IDisposable
{
    private readonly byte* _keys;
    private readonly byte* _values;
    private readonly long _blockBytes;

    public PagedKvCache(int layers, int kvDim, int blockCount, int blockSize, KvCacheType type)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        if (type == KvCacheType.Q8_0 && kvDim % Tensors.Q8_0.BlockSize != 0)
            throw new ArgumentException($"a Q8_0 KV cache needs rows that are whole 32-element blocks; this model's KV rows have {kvDim} elements", nameof(type));
        Layers = layers;
        KvDim = kvDim;
        BlockCount = blockCount;
        BlockSize = blockSize;
        Type = type;
        RowBytes = RowBytesOf(kvDim, type);
        _blockBytes = (long)layers * blockSize * RowBytes;
        nuint bytes = checked((nuint)(_blockBytes * blockCount));
        _keys = (byte*)NativeMemory.AlignedAlloc(bytes, 64);
        _values = (byte*)NativeMemory.AlignedAlloc(bytes, 64);
        ByteSize = 2 * (long)bytes;
    }

    public int Layers { get; }
    public int KvDim { get; }
    public int BlockCount { get; }
    public int BlockSize { get; }
    public KvCacheType Type { get; }
    public int RowBytes { get; }
    public long ByteSize { get; }

    /// <summary>Bytes of one block's keys and values over all layers.</summary>
    public static long BlockBytes(int layers, int kvDim, int blockSize, KvCacheType type) =>
        2L * layers * blockSize * RowBytesOf(kvDim, type);

    /// <summary>How many blocks fit in <paramref name="budgetBytes"/> (at least one).</summary>
    public static int BlocksForBudget(long budgetBytes, int layers, int kvDim, int blockSize, KvCacheType type) =>
        (int)Math.Clamp(budgetBytes / BlockBytes(layers, kvDim, blockSize, type), 1, int.MaxValue);

    private static int RowBytesOf(int kvDim, KvCacheType type) => type switch
    {
        KvCacheType.F16 => kvDim * 2,
        KvCacheType.F32 => kvDim * 4,
        _ => kvDim / Tensors.Q8_0.BlockSize * Tensors.Q8_0.BlockBytes,
    };

    /// <summary>Stores one position's key and value rows (kvDim each) for a layer at a slot.</summary>
    public void Store(int layer, int slot, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        Write(key[..KvDim], Row(_keys, layer, slot));
        Write(value[..KvDim], Row(_values, layer, slot));
    }

    /// <summary>Elements [start, start + count) of a slot's key row, as <see cref="KvCache.ReadKey"/>.</summary>
    public ReadOnlySpan<float> ReadKey(int layer, int slot, int start, int count, Span<float> scratch) =>
        Read(Row(_keys, layer, slot), start, count, scratch);

    /// <summary>As <see cref="ReadKey"/>, for the value row.</summary>
    public ReadOnlySpan<float> ReadValue(int layer, int slot, int start, int count, Span<float> scratch) =>
        Read(Row(_values, layer, slot), start, count, scratch);

    /// <summary>
    /// Elements [start, start + length) of the key (or value) rows of positions [first, first + count) of a sequence
    /// whose blocks are <paramref name="blockTable"/>, into <paramref name="destination"/> (count × length): what
    /// <see cref="ReadKey"/> per position gives, with the argument checks once per call and no per-position call chain
    /// through the rows interface: attention reads one head's slice (64 elements) of every position of every sequence
    /// each step.
    /// </summary>
    public void ReadRows(bool values, int layer, ReadOnlySpan<int> blockTable, int first, int count, int start, int length, Span<float> destination)
    {
        if ((uint)layer >= (uint)Layers || first < 0 || count < 0 || start < 0 || length < 0 || start + length > KvDim)
            throw new ArgumentOutOfRangeException(nameof(layer), "layer, positions or elements out of range");
        if (destination.Length < (long)count * length)
            throw new ArgumentException($"{count} × {length} floats are needed; got {destination.Length}", nameof(destination));
        if (count > 0 && (first + count - 1) / BlockSize >= blockTable.Length)
            throw new ArgumentOutOfRangeException(nameof(count), "positions past the block table");
        if (Type == KvCacheType.Q8_0 && (start % Tensors.Q8_0.BlockSize != 0 || length % Tensors.Q8_0.BlockSize != 0))
            throw new ArgumentException($"a Q8_0 cache reads whole {Tensors.Q8_0.BlockSize}-element blocks", nameof(start));
        byte* data = values ? _values : _keys;
        // The positions of one block are consecutive rows of a layer, so the block table and the divisions are
        // consulted once per run of positions within a block, not once per position.
        fixed (float* target = destination)
        {
            for (int i = 0; i < count; )
            {
                int position = first + i;
                int block = blockTable[position / BlockSize];
                if ((uint)block >= (uint)BlockCount)
                    throw new ArgumentOutOfRangeException(nameof(blockTable), $"block {block} is outside 0..{BlockCount - 1}");
                int offset = position % BlockSize;
                int run = Math.Min(BlockSize - offset, count - i);
                byte* row = data + block * _blockBytes + ((long)layer * BlockSize + offset) * RowBytes;
                ConvertRows(row, run, start, length, target + (long)i * length);
                i += run;
            }
        }
    }

    /// <summary>
    /// Asks the CPU to start loading what <see cref="ReadRows"/> with the same arguments would read, without waiting
    /// for it: a sequence's rows are scattered over its blocks (and, per layer, a row apart within one), so in a step
    /// that streams weights between layers they come from memory, and loaded one row after another their latency, not
    /// the arithmetic, sets attention's pace. Positions outside the block table, or blocks outside the cache, are
    /// skipped: a hint never fails.
    /// </summary>
    public void PrefetchRows(bool values, int layer, ReadOnlySpan<int> blockTable, int first, int count, int start, int length)
    {
        if (!Sse.IsSupported || (uint)layer >= (uint)Layers || first < 0 || start < 0 || length <= 0 || start + length > KvDim)
            return;
        count = (int)Math.Min(count, (long)blockTable.Length * BlockSize - first);
        byte* data = values ? _values : _keys;
        long startByte = (long)start * RowBytes / KvDim;
        long endByte = (long)(start + length) * RowBytes / KvDim;
        for (int i = 0; i < count; )
        {
            int position = first + i;
            int block = blockTable[position / BlockSize];
            int offset = position % BlockSize;
            int run = Math.Min(BlockSize - offset, count - i);
            i += run;
            if ((uint)block >= (uint)BlockCount)
                continue;
            byte* row = data + block * _blockBytes + ((long)layer * BlockSize + offset) * RowBytes;
            for (int r = 0; r < run; r++, row += RowBytes)
            {
                for (long line = (long)(row + startByte) & ~63L; line < (long)(row + endByte); line += 64)
                    Sse.Prefetch0((void*)line);
            }
        }
    }

    /// <summary>Elements [start, start + length) of <paramref name="rows"/> consecutive rows, as floats, rows × length.</summary>
    private void ConvertRows(byte* row, int rows, int start, int length, float* target)
    {
        for (int r = 0; r < rows; r++, row += RowBytes, target += length)
        {
            var destination = new Span<float>(target, length);
            IKeyValueRows.Place(Read(row, start, length, destination), destination);
        }
    }

    /// <summary>Copies every layer of block <paramref name="source"/> into <paramref name="target"/> (copy-on-write).</summary>
    public void CopyBlock(int source, int target)
    {
        if ((uint)source >= (uint)BlockCount || (uint)target >= (uint)BlockCount)
            throw new ArgumentOutOfRangeException(nameof(source));
        Buffer.MemoryCopy(_keys + source * _blockBytes, _keys + target * _blockBytes, _blockBytes, _blockBytes);
        Buffer.MemoryCopy(_values + source * _blockBytes, _values + target * _blockBytes, _blockBytes, _blockBytes);
    }

    private byte* Row(byte* data, int layer, int slot)
    {
        int block = slot / BlockSize;
        if ((uint)block >= (uint)BlockCount || (uint)layer >= (uint)Layers)
            throw new ArgumentOutOfRangeException(nameof(slot));
        return data + block * _blockBytes + ((long)layer * BlockSize + slot % BlockSize) * RowBytes;
    }

    private void Write(ReadOnlySpan<float> source, byte* row)
    {
        switch (Type)
        {
            case KvCacheType.F16:
                TensorPrimitives.ConvertToHalf(source, new Span<Half>(row, KvDim));
                break;
            case KvCacheType.F32:
                source.CopyTo(new Span<float>(row, KvDim));
                break;
            default:
                Tensors.Q8_0.QuantizeActivations(source, new Span<byte>(row, RowBytes));
                break;
        }
    }

    private ReadOnlySpan<float> Read(byte* row, int start, int count, Span<float> scratch)
    {
        switch (Type)
        {
            case KvCacheType.F32:
                return new ReadOnlySpan<float>((float*)row + start, count);
            case KvCacheType.F16:
                Tensors.F16.Dequantize(new ReadOnlySpan<byte>((ushort*)row + start, 2 * count), scratch[..count]);
                return scratch[..count];
            default:
                byte* blocks = row + start / Tensors.Q8_0.BlockSize * Tensors.Q8_0.BlockBytes;
                Tensors.Q8_0.Dequantize(new ReadOnlySpan<byte>(blocks, count / Tensors.Q8_0.BlockSize * Tensors.Q8_0.BlockBytes), scratch[..count]);
                return scratch[..count];
        }
    }

    private int _disposed;

    ~PagedKvCache() => Free();

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        NativeMemory.AlignedFree(_keys);
        NativeMemory.AlignedFree(_values);
    }
}
