namespace Kiln.Models.Llama;

/// <summary>One KV head of a contiguous <see cref="KvCache"/> layer.</summary>
internal readonly struct ContiguousKeyValueRows(KvCache cache, int layer, int kvHead, int headDim) : IKeyValueRows
{
    public void ReadKeys(int first, int count, Span<float> destination)
    {
        for (int i = 0; i < count; i++)
            IKeyValueRows.Place(cache.ReadKey(layer, first + i, kvHead * headDim, headDim, destination.Slice(i * headDim, headDim)),
                destination.Slice(i * headDim, headDim));
    }

    public void ReadValues(int first, int count, Span<float> destination)
    {
        for (int i = 0; i < count; i++)
            IKeyValueRows.Place(cache.ReadValue(layer, first + i, kvHead * headDim, headDim, destination.Slice(i * headDim, headDim)),
                destination.Slice(i * headDim, headDim));
    }

    /// <summary>Nothing: a contiguous cache's positions are evenly spaced rows, which the hardware prefetcher follows.</summary>
    public void Prefetch(bool values, int first, int count)
    {
    }
}
