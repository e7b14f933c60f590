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
        ElementBytes = type == KvCacheType.F16 ? 2 : 4;
        RowBytes = type == KvCacheType.Q8_0 ? kvDim / Tensors.Q8_0.BlockSize * Tensors.Q8_0.BlockBytes : kvDim * ElementBytes;
        LayerStride = checked((long)contextLength * kvDim);
        nuint bytes = checked((nuint)((long)contextLength * RowBytes * layers));
        _keys = NativeMemory.AlignedAlloc(bytes, 64);
        _values = NativeMemory.AlignedAlloc(bytes, 64);
        ByteSize = 2 * (long)bytes;
    }

    public int Layers { get; }
    public int ContextLength { get; }
    public int KvDim { get; }
    public KvCacheType Type { get; }
    /// <summary>Bytes per element for F16 and F32 (Q8_0 rows are blocks: see <see cref="RowBytes"/>).</summary>
    public int ElementBytes { get; }

    /// <summary>Bytes of one position's key (or value) row.</summary>
    public int RowBytes { get; }
    public long ByteSize { get; }

    /// <summary>Elements between the same position of consecutive layers.</summary>
    public long LayerStride { get; }

    public Half* KeysF16(int layer) => (Half*)_keys + layer * LayerStride;
    public Half* ValuesF16(int layer) => (Half*)_values + layer * LayerStride;
    public float* KeysF32(int layer) => (float*)_keys + layer * LayerStride;
    public float* ValuesF32(int layer) => (float*)_values + layer * LayerStride;

    /// <summary>Stores one position's key and value rows (kvDim each) for a layer.</summary>
    public void Store(int layer, int position, ReadOnlySpan<float> key, ReadOnlySpan<float> value)
    {
        long offset = (long)position * KvDim;
        if (Type == KvCacheType.F16)
        {
            System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(key[..KvDim], new Span<Half>(KeysF16(layer) + offset, KvDim));
            System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(value[..KvDim], new Span<Half>(ValuesF16(layer) + offset, KvDim));
        }
        else if (Type == KvCacheType.Q8_0)
        {
            long at = ((long)layer * ContextLength + position) * RowBytes;
            Tensors.Q8_0.QuantizeActivations(key[..KvDim], new Span<byte>((byte*)_keys + at, RowBytes));
            Tensors.Q8_0.QuantizeActivations(value[..KvDim], new Span<byte>((byte*)_values + at, RowBytes));
        }
        else
        {
            key[..KvDim].CopyTo(new Span<float>(KeysF32(layer) + offset, KvDim));
            value[..KvDim].CopyTo(new Span<float>(ValuesF32(layer) + offset, KvDim));
        }
    }

    /// <summary>
    /// Elements [start, start + count) of a position's key row as floats: the cache itself for F32, widened into
    /// <paramref name="scratch"/> otherwise. For Q8_0, start and count must be whole blocks.
    /// </summary>
    public ReadOnlySpan<float> ReadKey(int layer, int position, int start, int count, Span<float> scratch) =>
        Read(_keys, layer, position, start, count, scratch);

    /// <summary>As <see cref="ReadKey"/>, for the value row.</summary>
    public ReadOnlySpan<float> ReadValue(int layer, int position, int start, int count, Span<float> scratch) =>
        Read(_values, layer, position, start, count, scratch);

    private ReadOnlySpan<float> Read(void* data, int layer, int position, int start, int count, Span<float> scratch)
    {
        long row = (long)layer * ContextLength + position;
        switch (Type)
        {
            case KvCacheType.F32:
                return new ReadOnlySpan<float>((float*)data + row * KvDim + start, count);
            case KvCacheType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>((Half*)data + row * KvDim + start, count), scratch[..count]);
                return scratch[..count];
            default:
                byte* blocks = (byte*)data + row * RowBytes + start / Tensors.Q8_0.BlockSize * Tensors.Q8_0.BlockBytes;
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
