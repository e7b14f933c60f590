using System.Runtime.InteropServices;

namespace Kiln.Models.Llama;

/// <summary>
/// Contiguous per-layer key and value cache for one sequence: [layer][position][kvDim], in F16 (as
/// llama.cpp stores it by default, and rounded the same way), F32 or Q8_0 (32-element blocks, quantized as
/// llama.cpp's CPU backend quantizes activations). Native memory, so a multi-GB cache neither lands on the GC
/// heap nor is zeroed page by page before use.
/// </summary>
public sealed unsafe class KvCache : IDisposable
{
    private readonly void* _keys;
    private readonly void* _values;

    public KvCache(int layers, int contextLength, int kvDim, KvCacheType type)
    {
        Layers = layers;
        ContextLength = contextLength;
        KvDim = kvDim;
        Type = type;
        if (type == KvCacheType.Q8_0 && kvDim % Tensors.Q8_0.BlockSize != 0)
            throw new ArgumentException($"a Q8_0 KV cache needs rows that are whole 32-element blocks; this model's KV rows have {kvDim} elements", nameof(type));
        RowBytes = type switch
        {
            KvCacheType.F16 => kvDim * 2,
            KvCacheType.F32 => kvDim * 4,
            _ => kvDim / Tensors.Q8_0.BlockSize * Tensors.Q8_0.BlockBytes,
        };
        nuint bytes = checked((nuint)((long)contextLength * RowBytes * layers));
        _keys = NativeMemory.AlignedAlloc(bytes, 64);
        _values = NativeMemory.AlignedAlloc(bytes, 64);
        ByteSize = 2 * (long)bytes;
    }

    public int Layers { get; }
    public int ContextLength { get; }
    public int KvDim { get; }
    public KvCacheType Type { get; }
    public long ByteSize { get; }

    /// <summary>Bytes of one position's key (or value) row.</summary>
    public int RowBytes { get; }

    /// <summary>Stores one position's key and value rows (kvDim each) for a layer.</summary>
    public void Store(int layer, int position, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        Write(key[..KvDim], Row(_keys, layer, position));
        Write(value[..KvDim], Row(_values, layer, position));
    }

    private void Write(ReadOnlySpan<float> source, byte* row)
    {
        switch (Type)
        {
            case KvCacheType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(source, new Span<Half>(row, KvDim));
                break;
            case KvCacheType.F32:
                source.CopyTo(new Span<float>(row, KvDim));
                break;
            default:
                Tensors.Q8_0.QuantizeActivations(source, new Span<byte>(row, RowBytes));
                break;
        }
    }

    /// <summary>
    /// Elements [start, start + count) of a position's key row as floats: the cache itself for F32, widened into
    /// <paramref name="scratch"/> otherwise. For Q8_0, start and count must be whole blocks.
    /// </summary>
    public ReadOnlySpan<float> ReadKey(int layer, int position, int start, int count, Span<float> scratch) =>
        Read(Row(_keys, layer, position), start, count, scratch);

    /// <summary>As <see cref="ReadKey"/>, for the value row.</summary>
    public ReadOnlySpan<float> ReadValue(int layer, int position, int start, int count, Span<float> scratch) =>
        Read(Row(_values, layer, position), start, count, scratch);

    private byte* Row(void* data, int layer, int position) => (byte*)data + ((long)layer * ContextLength + position) * RowBytes;

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

    // A context that is never disposed must not leak gigabytes of native memory.
    ~KvCache() => Free();

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
