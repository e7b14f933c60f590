namespace Kiln.Models.Llama;

/// <summary>One KV head of one sequence in a <see cref="PagedKvCache"/> layer, through its block table.</summary>
internal readonly struct PagedKeyValueRows(PagedKvCache cache, int layer, int[] blockTable, int kvHead, int headDim) : IKeyValueRows
{
    public void ReadKeys(int first, int count, Span<float> destination)
    {
        for (int i = 0; i < count; i++)
            IKeyValueRows.Place(cache.ReadKey(layer, Slot(first + i), kvHead * headDim, headDim, destination.Slice(i * headDim, headDim)),
                destination.Slice(i * headDim, headDim));
    }

    public void ReadValues(int first, int count, Span<float> destination)
    {
        for (int i = 0; i < count; i++)
            IKeyValueRows.Place(cache.ReadValue(layer, Slot(first + i), kvHead * headDim, headDim, destination.Slice(i * headDim, headDim)),
                destination.Slice(i * headDim, headDim));
    }

    private int Slot(int position) => blockTable[position / cache.BlockSize] * cache.BlockSize + position % cache.BlockSize;
}
