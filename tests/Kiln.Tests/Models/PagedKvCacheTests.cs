using Kiln.Models.Llama;

namespace Kiln.Tests.Models;

/// <summary>The paged cache's batched row reads against its per-position reads.</summary>
public sealed class PagedKvCacheTests
{
    [Theory]
    [InlineData(KvCacheType.F16)]
    [InlineData(KvCacheType.F32)]
    [InlineData(KvCacheType.Q8_0)]
    public void ReadRowsGivesWhatReadKeyAndReadValueGivePerPosition(KvCacheType type)
    {
        const int layers = 3, kvDim = 128, blockSize = 4, headDim = 64;
        using var cache = new PagedKvCache(layers, kvDim, blockCount: 6, blockSize, type);
        var rng = new Random(7);
        int[] blockTable = [4, 1, 5]; // out of order, as a sequence's blocks are
        var key = new float[kvDim];
        var value = new float[kvDim];
        for (int layer = 0; layer < layers; layer++)
        {
            for (int position = 0; position < blockTable.Length * blockSize; position++)
            {
                for (int i = 0; i < kvDim; i++)
                {
                    key[i] = (float)(rng.NextDouble() * 8 - 4);
                    value[i] = (float)(rng.NextDouble() * 8 - 4);
                }
                cache.Store(layer, blockTable[position / blockSize] * blockSize + position % blockSize, key, value);
            }
        }

        foreach (var (first, count) in new[] { (0, 12), (3, 6), (5, 1), (8, 0), (1, 10), (4, 4), (7, 2), (11, 1) })
        {
            var keys = new float[count * headDim];
            var values = new float[count * headDim];
            cache.ReadRows(values: false, 2, blockTable, first, count, headDim, headDim, keys);
            cache.ReadRows(values: true, 2, blockTable, first, count, headDim, headDim, values);
            var scratch = new float[headDim];
            for (int i = 0; i < count; i++)
            {
                int position = first + i;
                int slot = blockTable[position / blockSize] * blockSize + position % blockSize;
                Assert.Equal(cache.ReadKey(2, slot, headDim, headDim, scratch).ToArray(), keys.AsSpan(i * headDim, headDim).ToArray());
                Assert.Equal(cache.ReadValue(2, slot, headDim, headDim, scratch).ToArray(), values.AsSpan(i * headDim, headDim).ToArray());
            }
        }

        var room = new float[12 * headDim];
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.ReadRows(false, 3, blockTable, 0, 1, 0, headDim, room));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.ReadRows(false, 0, blockTable, 10, 3, 0, headDim, room));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.ReadRows(false, 0, blockTable, 0, 1, 100, headDim, room));
        Assert.Throws<ArgumentException>(() => cache.ReadRows(false, 0, blockTable, 0, 12, 0, headDim, new float[headDim]));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.ReadRows(false, 0, [9], 0, 1, 0, headDim, room));
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.ReadRows(false, 0, [4, 9], 2, 3, 0, headDim, room));
        if (type == KvCacheType.Q8_0)
            Assert.Throws<ArgumentException>(() => cache.ReadRows(false, 0, blockTable, 0, 1, 16, headDim, room));
    }

    [Fact]
    public void PrefetchRowsIsAHintThatNeverFailsNorChangesWhatIsRead()
    {
        const int layers = 2, kvDim = 64, blockSize = 4;
        using var cache = new PagedKvCache(layers, kvDim, blockCount: 3, blockSize, KvCacheType.F16);
        var key = new float[kvDim];
        var value = new float[kvDim];
        for (int i = 0; i < kvDim; i++)
        {
            key[i] = i;
            value[i] = -i;
        }
        int[] blockTable = [2, 0];
        for (int position = 0; position < 8; position++)
            cache.Store(1, blockTable[position / blockSize] * blockSize + position % blockSize, key, value);

        cache.PrefetchRows(false, 1, blockTable, 0, 8, 32, 32);
        cache.PrefetchRows(true, 1, blockTable, 3, 100, 0, kvDim); // past the block table
        cache.PrefetchRows(true, 1, [7, 0], 0, 8, 0, kvDim); // a block outside the cache
        cache.PrefetchRows(false, 5, blockTable, 0, 8, 0, kvDim); // a layer outside the cache
        cache.PrefetchRows(false, 1, blockTable, -3, 8, 0, 2 * kvDim); // positions and elements out of range
        cache.PrefetchRows(false, 1, blockTable, 0, 0, 0, kvDim);

        var keys = new float[8 * 32];
        var values = new float[8 * 32];
        cache.ReadRows(values: false, 1, blockTable, 0, 8, 32, 32, keys);
        cache.ReadRows(values: true, 1, blockTable, 0, 8, 32, 32, values);
        for (int i = 0; i < keys.Length; i++)
        {
            Assert.Equal(32 + i % 32, keys[i]);
            Assert.Equal(-(32 + i % 32), values[i]);
        }
    }
}
