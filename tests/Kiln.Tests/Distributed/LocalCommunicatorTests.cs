using Kiln.Distributed;
using Kiln.Training;

namespace Kiln.Tests.Distributed;

/// <summary>The in-process communicator against sums and copies written out plainly.</summary>
public sealed class LocalCommunicatorTests
{
    private static float[] Data(int rank, int n) => Enumerable.Range(0, n).Select(i => (float)Math.Sin(rank * 131 + i * 0.37) * (rank + 1)).ToArray();

    [Theory]
    [InlineData(1, 7)]
    [InlineData(2, 5000)]
    [InlineData(4, 33)]
    public void AllReduceGivesEveryRankTheSumInRankOrder(int size, int n)
    {
        var results = LocalCommunicator.Run(size, c =>
        {
            var d = Data(c.Rank, n);
            c.AllReduce<float>(d);
            return d;
        });
        var expected = new float[n];
        for (int r = 0; r < size; r++)
        {
            var d = Data(r, n);
            for (int i = 0; i < n; i++) expected[i] += d[i];
        }
        foreach (var result in results)
            Assert.Equal(expected, result);
    }

    [Fact]
    public void ReduceScatterAndAllGatherComposeToAllReduce()
    {
        const int size = 4, block = 6;
        var results = LocalCommunicator.Run(size, c =>
        {
            var send = Data(c.Rank, size * block);
            var mine = new float[block];
            c.ReduceScatter<float>(send, mine);
            var all = new float[size * block];
            c.AllGather<float>(mine, all);
            var reduced = Data(c.Rank, size * block);
            c.AllReduce<float>(reduced);
            return (all, reduced, mine);
        });
        for (int r = 0; r < size; r++)
        {
            Assert.Equal(results[r].reduced, results[r].all);
            Assert.Equal(results[r].reduced.AsSpan(r * block, block).ToArray(), results[r].mine);
        }
    }

    [Fact]
    public void BroadcastCopiesTheRootsDataAndDoublesAndLongsAdd()
    {
        var results = LocalCommunicator.Run(3, c =>
        {
            var b = new int[] { c.Rank, c.Rank * 10 };
            c.Broadcast<int>(b, root: 2);
            var d = new double[] { c.Rank + 0.5 };
            c.AllReduce<double>(d);
            var l = new long[] { 1L << 40 };
            c.AllReduce<long>(l);
            return (b, d[0], l[0]);
        });
        foreach (var (b, d, l) in results)
        {
            Assert.Equal([2, 20], b);
            Assert.Equal(0.5 + 1.5 + 2.5, d);
            Assert.Equal(3L << 40, l);
        }
    }

    [Fact]
    public void BFloat16SumsRoundOnceToNearestEven()
    {
        Assert.Equal(1f, (float)(BFloat16)1f);
        Assert.Equal(1f, (float)(BFloat16)1.00390625f); // exactly halfway between 1 and the next bfloat16: to even
        Assert.Equal(1.015625f, (float)(BFloat16)1.01171875f); // halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up, to even
        Assert.True(float.IsNaN((float)(BFloat16)float.NaN));
        var results = LocalCommunicator.Run(2, c =>
        {
            var v = new[] { (BFloat16)(c.Rank == 0 ? 1f : 0.00390625f) };
            c.AllReduce<BFloat16>(v);
            return (float)v[0];
        });
        Assert.All(results, v => Assert.Equal(1f, v)); // summed in float, then rounded once: 1 + 2^-8 is halfway, to even
    }

    [Fact]
    public void PointToPointMessagesArriveInOrderPerTagAndNonBlockingReceivesComplete()
    {
        var results = LocalCommunicator.Run(2, c =>
        {
            if (c.Rank == 0)
            {
                c.Send<float>([1, 2, 3], 1, tag: 5);
                c.Send<float>([4, 5, 6], 1, tag: 5);
                var back = new float[2];
                var request = c.ReceiveAsync<float>(back, 1, tag: 9);
                request.Wait();
                return back;
            }
            var a = new float[3];
            var b = new float[3];
            c.Receive<float>(a, 0, tag: 5);
            var r = c.ReceiveAsync<float>(b, 0, tag: 5);
            r.Wait();
            c.SendAsync<float>(new float[] { a[0] + b[0], a[2] + b[2] }, 0, tag: 9).Wait();
            return a.Concat(b).ToArray();
        });
        Assert.Equal([5f, 9f], results[0]);
        Assert.Equal([1f, 2f, 3f, 4f, 5f, 6f], results[1]);
    }

    [Fact]
    public void AMessageOfTheWrongLengthIsAClearError()
    {
        var e = Assert.Throws<CommunicatorException>(() => LocalCommunicator.Run(2, c =>
        {
            if (c.Rank == 0)
                c.Send<float>([1, 2, 3], 1, tag: 0);
            else
                c.Receive<float>(new float[4], 0, tag: 0);
        }));
        Assert.Contains("rank 1 failed", e.Message);
        Assert.Contains("3 Single, not 4 Single", e.Message);
    }

    [Fact]
    public void ARankThatFailsStopsTheOthersWithItsNameInsteadOfAHang()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<CommunicatorException>(() => LocalCommunicator.Run(4, c =>
        {
            if (c.Rank == 2)
                throw new InvalidOperationException("out of memory on purpose");
            c.AllReduce<float>(new float[8]); // would wait forever for rank 2
            var x = new float[1];
            c.Receive<float>(x, (c.Rank + 1) % 4, 0);
        }));
        Assert.Equal(2, e.FailedRank);
        Assert.Contains("rank 2 failed: out of memory on purpose", e.Message);
        Assert.IsType<InvalidOperationException>(e.InnerException);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void SplitMakesGroupsOrderedByKey()
    {
        var results = LocalCommunicator.Run(6, c =>
        {
            using var sub = c.Split(color: c.Rank % 2, key: -c.Rank);
            var v = new[] { c.Rank };
            sub.AllReduce<int>(v);
            var order = new int[sub.Size];
            sub.AllGather<int>([c.Rank], order);
            return (sub.Rank, sub.Size, v[0], order);
        });
        Assert.Equal([0 + 2 + 4, 1 + 3 + 5], results.Take(2).Select(r => r.Item3));
        Assert.Equal([4, 2, 0], results[0].order);
        Assert.Equal([5, 3, 1], results[1].order);
        Assert.Equal(2, results[0].Rank);
        Assert.All(results, r => Assert.Equal(3, r.Size));
    }

    [Fact]
    public void LayoutGroupsHoldTheRanksThatShareTheOtherCoordinates()
    {
        var layout = new ParallelLayout { Dp = 2, Tp = 2, Pp = 2 };
        var results = LocalCommunicator.Run(8, c =>
        {
            using var g = ParallelGroups.Create(c, layout);
            int[] Members(Communicator group)
            {
                var all = new int[group.Size];
                group.AllGather<int>([c.Rank], all);
                return all;
            }
            return (g.DpRank, g.TpRank, g.PpRank, Dp: Members(g.DataParallel), Tp: Members(g.TensorParallel), Pp: Members(g.Pipeline));
        });
        for (int rank = 0; rank < 8; rank++)
        {
            var r = results[rank];
            Assert.Equal(rank, layout.RankOf(r.DpRank, r.TpRank, r.PpRank));
            Assert.Equal([layout.RankOf(0, r.TpRank, r.PpRank), layout.RankOf(1, r.TpRank, r.PpRank)], r.Dp);
            Assert.Equal([layout.RankOf(r.DpRank, 0, r.PpRank), layout.RankOf(r.DpRank, 1, r.PpRank)], r.Tp);
            Assert.Equal([layout.RankOf(r.DpRank, r.TpRank, 0), layout.RankOf(r.DpRank, r.TpRank, 1)], r.Pp);
        }
        Assert.Equal([0, 1], results[1].Tp); // tensor-parallel ranks are neighbours
    }

    [Theory]
    [InlineData(2, 1, 1, 3, "but the job has 3")]
    [InlineData(1, 3, 1, 3, "heads divisible by 3")]
    [InlineData(1, 1, 3, 3, "layers divisible by 3")]
    public void LayoutsThatDoNotFitTheModelAreClearErrors(int dp, int tp, int pp, int world, string message)
    {
        var config = new TrainingConfig { Layers = 4, Dim = 64, Heads = 4, Vocab = 32, Context = 16 };
        var e = Assert.Throws<TrainingConfigException>(() => new ParallelLayout { Dp = dp, Tp = tp, Pp = pp }.Validate(config, world, batch: 4));
        Assert.Contains(message, e.Message);
    }
}
