using Kiln.Threading;

namespace Kiln.Tests.Threading;

public class WorkerPoolTests
{
    private sealed class CountingWork(int count) : IParallelWork
    {
        public readonly int[] Hits = new int[count];
        public readonly HashSet<int> Workers = [];

        public void Execute(int begin, int end, int worker)
        {
            for (int i = begin; i < end; i++)
                Interlocked.Increment(ref Hits[i]);
            lock (Workers)
                Workers.Add(worker);
        }
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 1, 1)]
    [InlineData(3, 10, 1)]
    [InlineData(4, 1000, 16)]
    [InlineData(2, 17, 16)]
    [InlineData(8, 5, 1)]
    public void EveryIndexRunsExactlyOnce(int threads, int count, int grain)
    {
        using var pool = new WorkerPool(threads);
        for (int round = 0; round < 50; round++)
        {
            var work = new CountingWork(count);
            pool.For(count, work, grain);
            Assert.All(work.Hits, h => Assert.Equal(1, h));
            Assert.All(work.Workers, w => Assert.InRange(w, 0, threads - 1));
        }
    }

    [Theory]
    [InlineData(1, 100, 1, 8)]
    [InlineData(2, 2048, 16, 8)]
    [InlineData(2, 17, 16, 8)]
    [InlineData(3, 1000, 16, 1)]
    [InlineData(4, 5, 1, 8)]
    public void DynamicChunksRunEveryIndexExactlyOnceOnGrainBoundaries(int threads, int count, int grain, int chunksPerThread)
    {
        using var pool = new WorkerPool(threads);
        for (int round = 0; round < 50; round++)
        {
            var work = new CountingWork(count);
            var starts = new List<int>();
            pool.ForDynamic(count, new Both(work, new RangeRecorder(starts)), grain, chunksPerThread);
            Assert.All(work.Hits, h => Assert.Equal(1, h));
            Assert.All(work.Workers, w => Assert.InRange(w, 0, threads - 1));
            Assert.All(starts, s => Assert.Equal(0, s % grain));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.ForDynamic(10, new CountingWork(10), 1, chunksPerThread: 0));
    }

    [Fact]
    public void DynamicChunksLetAFastWorkerTakeMoreOfTheWork()
    {
        // Worker 0 (the caller) is slowed down; with a shared chunk counter the other thread takes most chunks,
        // where a static split would give each thread half whatever its speed.
        using var pool = new WorkerPool(2);
        var work = new SlowCaller();
        pool.ForDynamic(64, work, grain: 1, chunksPerThread: 32);
        Assert.True(work.ItemsBy[1] > 32, $"worker 1 did {work.ItemsBy[1]} of 64 items");
    }

    private sealed class SlowCaller : IParallelWork
    {
        public readonly int[] ItemsBy = new int[2];

        public void Execute(int begin, int end, int worker)
        {
            if (worker == 0)
                Thread.Sleep(50);
            Interlocked.Add(ref ItemsBy[worker], end - begin);
        }
    }

    private sealed class Both(IParallelWork first, IParallelWork second) : IParallelWork
    {
        public void Execute(int begin, int end, int worker)
        {
            first.Execute(begin, end, worker);
            second.Execute(begin, end, worker);
        }
    }

    [Fact]
    public void RangesRespectTheGrain()
    {
        using var pool = new WorkerPool(3);
        var starts = new List<int>();
        var work = new RangeRecorder(starts);
        pool.For(100, work, grain: 16);
        Assert.All(starts, s => Assert.Equal(0, s % 16));
    }

    private sealed class RangeRecorder(List<int> starts) : IParallelWork
    {
        public void Execute(int begin, int end, int worker)
        {
            lock (starts)
                starts.Add(begin);
        }
    }

    private sealed class FailingWork : IParallelWork
    {
        public void Execute(int begin, int end, int worker)
        {
            if (worker == 1)
                throw new InvalidOperationException("boom");
        }
    }

    [Fact]
    public void AWorkerExceptionReachesTheCallerAndThePoolStaysUsable()
    {
        using var pool = new WorkerPool(2);
        var e = Assert.Throws<InvalidOperationException>(() => pool.For(10, new FailingWork()));
        Assert.Equal("boom", e.Message);
        var work = new CountingWork(10);
        pool.For(10, work);
        Assert.All(work.Hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public void DispatchAllocatesNothing()
    {
        using var pool = new WorkerPool(2);
        var work = new CountingWork(64);
        for (int i = 0; i < 200; i++)
            pool.For(64, work);
        Thread.Sleep(300);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
            pool.For(64, work);
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }

    [Fact]
    public void RejectsZeroThreads() => Assert.Throws<ArgumentOutOfRangeException>(() => new WorkerPool(0));
}
