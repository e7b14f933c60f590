using System.Diagnostics;
using Kiln.Distributed;

namespace Kiln.Tests.Distributed;

/// <summary>
/// <see cref="TimedCommunicator"/> counts the time its rank is blocked in communication: a collective entered early
/// waits for the late rank, and that wait is counted; a non-blocking operation counts only its Wait; splits add to the
/// same total; results pass through unchanged.
/// </summary>
public sealed class TimedCommunicatorTests
{
    private static readonly TimeSpan Delay = TimeSpan.FromMilliseconds(300);

    [Fact]
    public void ACollectiveCountsTheWaitForALateRank()
    {
        var waited = LocalCommunicator.Run(2, inner =>
        {
            var comm = new TimedCommunicator(inner);
            if (comm.Rank == 1)
                Thread.Sleep(Delay); // computing, not communicating: rank 1's count stays small
            var data = new float[] { comm.Rank + 1, 10 * (comm.Rank + 1) };
            comm.AllReduce<float>(data);
            Assert.Equal([3f, 30f], data);
            return comm.Waited;
        });
        Assert.True(waited[0] >= Delay * 0.5, $"rank 0 waited {waited[0].TotalMilliseconds} ms");
        Assert.True(waited[1] < Delay * 0.5, $"rank 1 waited {waited[1].TotalMilliseconds} ms");
    }

    [Fact]
    public void ANonBlockingOperationCountsOnlyItsWaitAndSplitsAddToTheTotal()
    {
        var waited = LocalCommunicator.Run(2, inner =>
        {
            var comm = new TimedCommunicator(inner);
            using var pair = comm.Split(0, comm.Rank);
            var buffer = new float[4];
            if (comm.Rank == 0)
            {
                var receive = pair.ReceiveAsync<float>(buffer, 1, 7);
                Thread.Sleep(Delay / 3); // overlapped work: not waiting
                long start = Stopwatch.GetTimestamp();
                receive.Wait();
                var inWait = Stopwatch.GetElapsedTime(start);
                Assert.Equal([1f, 2f, 3f, 4f], buffer);
                return (comm.Waited, inWait);
            }
            Thread.Sleep(Delay);
            pair.Send<float>([1f, 2f, 3f, 4f], 0, 7);
            return (comm.Waited, TimeSpan.Zero);
        });
        var (counted, inWait) = waited[0];
        // rank 0 blocked about Delay·2/3 in Wait; the Delay/3 before it is not counted
        Assert.True(counted >= inWait * 0.95 && counted <= inWait + TimeSpan.FromMilliseconds(50), $"counted {counted.TotalMilliseconds} ms, in Wait {inWait.TotalMilliseconds} ms");
        Assert.True(counted < Delay * 0.9, $"counted {counted.TotalMilliseconds} ms of a {Delay.TotalMilliseconds} ms delay, a third of it overlapped");
        var comm = new TimedCommunicator(LocalCommunicator.CreateWorld(1)[0]);
        comm.Barrier();
        comm.Reset();
        Assert.Equal(TimeSpan.Zero, comm.Waited);
    }
}
