namespace Kiln.Models.Llama;

/// <summary>One KV head of one sequence in a <see cref="PagedKvCache"/> layer, through its block table.</summary>
internal readonly struct PagedKeyValueRows(PagedKvCache cache, int layer, int[] blockTable, int kvHead, int headDim) : IKeyValueRows
{
    public void ReadKeys(int first, int count, Span<float> destination) =>
        cache.ReadRows(values: false, layer, blockTable, first, count, kvHead * headDim, headDim, destination);

    public void ReadValues(int first, int count, Span<float> destination) =>
        cache.ReadRows(values: true, layer, blockTable, first, count, kvHead * headDim, headDim, destination);

    public void Prefetch(bool values, int first, int count) =>
        cache.PrefetchRows(values, layer, blockTable, first, count, kvHead * headDim, headDim);
}
