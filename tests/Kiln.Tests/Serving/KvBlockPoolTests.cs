using Kiln.Models.Llama;
using Kiln.Serving;

namespace Kiln.Tests.Serving;

public sealed class KvBlockPoolTests
{
    [Fact]
    public void AllocatesEveryBlockOnceThenRefusesUntilOneIsReleased()
    {
        var pool = new KvBlockPool(4);
        var got = new HashSet<int>();
        for (int i = 0; i < 4; i++)
            Assert.True(got.Add(pool.Allocate()));
        Assert.Equal([0, 1, 2, 3], got.Order());
        Assert.Equal(-1, pool.Allocate());
        Assert.Equal(4, pool.UsedBlocks);
        pool.Release(2);
        Assert.Equal(1, pool.AvailableBlocks);
        Assert.Equal(2, pool.Allocate());
        Assert.Throws<InvalidOperationException>(() => { pool.Release(1); pool.Release(1); });
    }

    [Fact]
    public void SharedBlocksAreFreedByTheirLastReference()
    {
        var pool = new KvBlockPool(3);
        var a = new BlockTable();
        a.Append(pool.Allocate());
        a.Append(pool.Allocate());
        var b = new BlockTable();
        pool.Fork(a, b);
        Assert.Equal(a.Blocks.ToArray(), b.Blocks.ToArray());
        Assert.Equal(2, pool.RefCount(a[0]));
        pool.ReleaseAll(a);
        Assert.Equal(0, a.Count);
        Assert.Equal(1, pool.AvailableBlocks);
        pool.ReleaseAll(b);
        Assert.Equal(3, pool.AvailableBlocks);
    }

    [Fact]
    public void CopyOnWriteGivesTheWriterAPrivateBlockAndLeavesTheOtherTableAlone()
    {
        var pool = new KvBlockPool(4);
        var a = new BlockTable();
        a.Append(pool.Allocate());
        a.Append(pool.Allocate());
        var b = new BlockTable();
        pool.Fork(a, b);

        int source = pool.CopyOnWrite(b, 1);
        Assert.Equal(a[1], source);
        Assert.NotEqual(a[1], b[1]);
        Assert.Equal(a[0], b[0]);
        Assert.Equal(1, pool.RefCount(a[1]));
        Assert.Equal(1, pool.RefCount(b[1]));
        // Now private: a second write copies nothing.
        Assert.Equal(-1, pool.CopyOnWrite(b, 1));
        Assert.Equal(-1, pool.CopyOnWrite(a, 1));
        pool.ReleaseAll(a);
        pool.ReleaseAll(b);
        Assert.Equal(4, pool.AvailableBlocks);
    }

    [Fact]
    public void PagedStorageCopiesWholeBlocksForCopyOnWrite()
    {
        using var cache = new PagedKvCache(layers: 2, kvDim: 8, blockCount: 3, blockSize: 4, KvCacheType.F32);
        var k = new float[8];
        var v = new float[8];
        for (int slot = 4; slot < 8; slot++)
        {
            for (int layer = 0; layer < 2; layer++)
            {
                for (int i = 0; i < 8; i++) { k[i] = slot * 100 + layer * 10 + i; v[i] = -k[i]; }
                cache.Store(layer, slot, k, v);
            }
        }
        cache.CopyBlock(1, 2);
        var scratch = new float[8];
        for (int offset = 0; offset < 4; offset++)
        {
            Assert.Equal(cache.ReadKey(1, 4 + offset, 2, 3, scratch).ToArray(), cache.ReadKey(1, 8 + offset, 2, 3, scratch).ToArray());
            Assert.Equal(-((4 + offset) * 100 + 10 + 2), cache.ReadValue(1, 8 + offset, 2, 1, scratch)[0]);
        }
    }

    [Fact]
    public void F16StorageRoundsAsTheContiguousCacheDoes()
    {
        using var paged = new PagedKvCache(1, 32, 2, 16, KvCacheType.F16);
        using var contiguous = new KvCache(1, 32, 32, KvCacheType.F16);
        var rng = new Random(5);
        var k = Enumerable.Range(0, 32).Select(_ => (float)rng.NextDouble() * 3 - 1.5f).ToArray();
        paged.Store(0, 21, k, k);
        contiguous.Store(0, 5, k, k);
        var s1 = new float[32];
        var s2 = new float[32];
        Assert.Equal(contiguous.ReadKey(0, 5, 0, 32, s2).ToArray(), paged.ReadKey(0, 21, 0, 32, s1).ToArray());
        Assert.NotEqual(k, paged.ReadKey(0, 21, 0, 32, s1).ToArray()); // really rounded
    }

    [Fact]
    public void BudgetGivesWholeBlocks()
    {
        long perBlock = PagedKvCache.BlockBytes(layers: 22, kvDim: 256, blockSize: 16, KvCacheType.F16);
        Assert.Equal(2L * 22 * 16 * 256 * 2, perBlock);
        Assert.Equal(10, PagedKvCache.BlocksForBudget(10 * perBlock + perBlock - 1, 22, 256, 16, KvCacheType.F16));
        Assert.Equal(1, PagedKvCache.BlocksForBudget(1, 22, 256, 16, KvCacheType.F16));
    }
}
