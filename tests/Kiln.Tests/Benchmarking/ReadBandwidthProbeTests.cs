using Kiln.Benchmarking;

namespace Kiln.Tests.Benchmarking;

public class ReadBandwidthProbeTests
{
    [Fact]
    public void MeasuresEveryPassAndReportsBestAndMedian()
    {
        var bw = ReadBandwidthProbe.Measure(threads: 2, bytes: 8L << 20, passes: 4);
        Assert.Equal(8L << 20, bw.Bytes);
        Assert.Equal(4, bw.PassGBps.Count);
        Assert.All(bw.PassGBps, r => Assert.True(r > 0 && double.IsFinite(r)));
        Assert.Equal(bw.PassGBps.Max(), bw.BestGBps);
        var sorted = bw.PassGBps.Order().ToArray();
        Assert.Equal((sorted[1] + sorted[2]) / 2, bw.MedianGBps, 12);
    }

    [Theory]
    [InlineData(0, 1L << 20, 1)]
    [InlineData(1, 1000, 1)]
    [InlineData(1, 1L << 20, 0)]
    public void RejectsBadArguments(int threads, long bytes, int passes) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => ReadBandwidthProbe.Measure(threads, bytes, passes));
}
