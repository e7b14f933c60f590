using Kiln.Distributed;

namespace Kiln.Tests.Distributed;

/// <summary>The checks behind `kiln mpi-check`: they pass on the reference communicator and catch a faulty one.</summary>
public sealed class CommunicatorConformanceTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void EveryCheckPassesOnTheLocalCommunicator(int size)
    {
        var reports = LocalCommunicator.Run(size, c => CommunicatorConformance.Run(c));
        foreach (var report in reports)
        {
            Assert.Empty(report.LocalFailures);
            Assert.True(report.Passed);
            Assert.Equal(CommunicatorConformance.CheckNames.Count, report.Checks.Count);
        }
    }

    [Fact]
    public void AWrongSumOnOneRankFailsThatCheckOnEveryRanksReport()
    {
        var reports = LocalCommunicator.Run(3, c => CommunicatorConformance.Run(new OffByOneOnRank1(c)));
        int check = CommunicatorConformance.CheckNames.ToList().IndexOf("allreduce-double");
        foreach (var report in reports)
        {
            Assert.Equal(1, report.Failed);
            Assert.Equal(1, report.FailedRankCounts[check]);
        }
        Assert.Empty(reports[0].LocalFailures);
        Assert.Contains(reports[1].LocalFailures, f => f.StartsWith("allreduce-double: element 0 is", StringComparison.Ordinal));
    }

    [Fact]
    public void ValuesAreQuartersThatSumExactlyInBFloat16()
    {
        for (int r = 0; r < 8; r++)
            for (int i = 0; i < 1000; i++)
            {
                float v = CommunicatorConformance.Value(r, i);
                Assert.InRange(v, -7.5f, 7.5f);
                Assert.Equal(v, (float)(BFloat16)v);
                Assert.Equal(0f, v * 4 - MathF.Round(v * 4));
            }
    }

    /// <summary>A communicator whose double all-reduce is off by one on rank 1: what a broken MPI might do.</summary>
    private sealed class OffByOneOnRank1(Communicator inner) : Communicator
    {
        public override int Rank => inner.Rank;
        public override int Size => inner.Size;
        public override Communicator Split(int color, int key) => inner.Split(color, key);
        public override void Barrier() => inner.Barrier();

        public override void AllReduce<T>(Span<T> data)
        {
            inner.AllReduce(data);
            if (typeof(T) == typeof(double) && Rank == 1)
                System.Runtime.InteropServices.MemoryMarshal.Cast<T, double>(data)[0] += 1;
        }

        public override void ReduceScatter<T>(ReadOnlySpan<T> send, Span<T> receive) => inner.ReduceScatter(send, receive);
        public override void AllGather<T>(ReadOnlySpan<T> send, Span<T> receive) => inner.AllGather(send, receive);
        public override void Broadcast<T>(Span<T> data, int root) => inner.Broadcast(data, root);
        public override void Send<T>(ReadOnlySpan<T> data, int destination, int tag) => inner.Send(data, destination, tag);
        public override void Receive<T>(Span<T> data, int source, int tag) => inner.Receive(data, source, tag);
        public override CommRequest SendAsync<T>(ReadOnlyMemory<T> data, int destination, int tag) => inner.SendAsync(data, destination, tag);
        public override CommRequest ReceiveAsync<T>(Memory<T> data, int source, int tag) => inner.ReceiveAsync(data, source, tag);
        public override CommRequest AllReduceAsync<T>(Memory<T> data) => inner.AllReduceAsync(data);
        public override void Dispose() => inner.Dispose();
    }
}
