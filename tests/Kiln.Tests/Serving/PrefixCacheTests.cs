using Kiln.Serving;

namespace Kiln.Tests.Serving;

public sealed class PrefixCacheTests
{
    [Fact]
    public void HashesChainThroughTheParent()
    {
        int[] tokens = [1, 2, 3, 4];
        var a = BlockHash.Chain(BlockHash.Root, tokens);
        Assert.Equal(a, BlockHash.Chain(BlockHash.Root, tokens));
        Assert.NotEqual(a, BlockHash.Chain(BlockHash.Root, [1, 2, 3, 5]));
        var child = BlockHash.Chain(a, tokens);
        Assert.NotEqual(a, child);
        Assert.NotEqual(child, BlockHash.Chain(BlockHash.Chain(BlockHash.Root, [9, 9, 9, 9]), tokens));
        // SHA-256 of 32 zero bytes followed by the little-endian ids 1, 2, 3, 4, computed independently.
        byte[] input = new byte[48];
        for (int i = 0; i < 4; i++)
            input[32 + 4 * i] = (byte)(i + 1);
        byte[] digest = System.Security.Cryptography.SHA256.HashData(input);
        Assert.Equal(BitConverter.ToUInt64(digest, 0), a.A);
        Assert.Equal(BitConverter.ToUInt64(digest, 24), a.D);
    }

    [Fact]
    public void ReleasedCachedBlocksStayReusableUntilMemoryIsNeeded()
    {
        var pool = new KvBlockPool(3);
        var h1 = BlockHash.Chain(BlockHash.Root, [1]);
        var h2 = BlockHash.Chain(h1, [2]);
        int b1 = pool.Allocate(), b2 = pool.Allocate();
        pool.Register(b1, h1);
        pool.Register(b2, h2);
        pool.Release(b1);
        pool.Release(b2);
        Assert.Equal(3, pool.AvailableBlocks);
        Assert.Equal(2, pool.CachedBlocks);

        // A hit takes the cached block back out of the evictable set.
        Assert.Equal(b1, pool.TryReuse(h1));
        Assert.Equal(1, pool.RefCount(b1));
        Assert.Equal(2, pool.AvailableBlocks);
        Assert.Equal(-1, pool.TryReuse(BlockHash.Chain(h1, [3])));

        // The empty block goes first, then the least recently released cached one (b2); b1 is referenced.
        int fresh = pool.Allocate();
        Assert.NotEqual(b1, fresh);
        Assert.NotEqual(b2, fresh);
        Assert.True(pool.Contains(h2));
        Assert.Equal(b2, pool.Allocate());
        Assert.False(pool.Contains(h2));
        Assert.Equal(-1, pool.Allocate());
        Assert.True(pool.Contains(h1));
    }

    [Fact]
    public void EvictionFollowsReleaseOrder()
    {
        var pool = new KvBlockPool(3);
        var hashes = new BlockHash[3];
        var blocks = new int[3];
        for (int i = 0; i < 3; i++)
        {
            hashes[i] = BlockHash.Chain(BlockHash.Root, [i]);
            blocks[i] = pool.Allocate();
            pool.Register(blocks[i], hashes[i]);
        }
        pool.Release(blocks[2]);
        pool.Release(blocks[0]);
        pool.Release(blocks[1]);
        // A reuse then release moves block 2 to the young end.
        Assert.Equal(blocks[2], pool.TryReuse(hashes[2]));
        pool.Release(blocks[2]);
        Assert.Equal(blocks[0], pool.Allocate());
        Assert.Equal(blocks[1], pool.Allocate());
        Assert.Equal(blocks[2], pool.Allocate());
        Assert.Equal(0, pool.CachedBlocks);
    }

    [Fact]
    public void ADuplicatePrefixKeepsTheFirstCopy()
    {
        var pool = new KvBlockPool(2);
        var h = BlockHash.Chain(BlockHash.Root, [7]);
        int a = pool.Allocate(), b = pool.Allocate();
        pool.Register(a, h);
        pool.Register(b, h);
        pool.Release(b);
        Assert.Equal(1, pool.CachedBlocks);
        Assert.Equal(a, pool.TryReuse(h));
    }
}
