using System.Runtime.InteropServices;

namespace Kiln.Models.Llama;

/// <summary>
/// Contiguous per-layer key and value cache for one sequence: [layer][position][kvDim], in F16 (as
/// llama.cpp stores it by default, and rounded the same way) or F32. Native memory, so a multi-GB
/// cache neither lands on the GC heap nor is zeroed page by page before use.
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
        ElementBytes = type == KvCacheType.F16 ? 2 : 4;
        LayerStride = checked((long)contextLength * kvDim);
        nuint bytes = checked((nuint)(LayerStride * layers * ElementBytes));
        _keys = NativeMemory.AlignedAlloc(bytes, 64);
        _values = NativeMemory.AlignedAlloc(bytes, 64);
        ByteSize = 2 * (long)bytes;
    }

    public int Layers { get; }
    public int ContextLength { get; }
    public int KvDim { get; }
    public KvCacheType Type { get; }
    public int ElementBytes { get; }
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
        else
        {
            key[..KvDim].CopyTo(new Span<float>(KeysF32(layer) + offset, KvDim));
            value[..KvDim].CopyTo(new Span<float>(ValuesF32(layer) + offset, KvDim));
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
