using Kiln.Distributed.Planning;

namespace Kiln.Tests.Distributed.Planning;

public sealed class CostModelTests
{
    [Fact]
    public void RingCollectivesMoveTheBandwidthOptimalVolumeInNMinusOneSteps()
    {
        // 1 GB over 4 ranks at 1 GB/s, 10 µs per step: an all-reduce sends 2·3/4 GB in 6 steps, a reduce-scatter or
        // an all-gather 3/4 GB in 3
        Assert.Equal(1.5 + 6 * 10e-6, CostModel.RingAllReduceSeconds(1e9, 4, 1e9, 10e-6), 12);
        Assert.Equal(0.75 + 3 * 10e-6, CostModel.RingReduceScatterSeconds(1e9, 4, 1e9, 10e-6), 12);
        Assert.Equal(0.75 + 3 * 10e-6, CostModel.RingAllGatherSeconds(1e9, 4, 1e9, 10e-6), 12);
        // 2 ranks: each sends half of the payload twice
        Assert.Equal(1.0, CostModel.RingAllReduceSeconds(2e9, 2, 2e9, 0), 12);
        Assert.Equal(0, CostModel.RingAllReduceSeconds(1e9, 1, 1e9, 10e-6));
        Assert.Equal(0, CostModel.RingReduceScatterSeconds(1e9, 1, 1e9, 10e-6));
        Assert.Equal(0.5 + 2e-6, CostModel.PointToPointSeconds(5e8, 1e9, 2e-6), 12);
    }

    [Theory]
    [InlineData(1, 1, 0.0)]
    [InlineData(1, 8, 0.0)]
    [InlineData(2, 1, 0.5)]
    [InlineData(4, 4, 3.0 / 7)]
    [InlineData(4, 8, 3.0 / 11)]
    [InlineData(8, 32, 7.0 / 39)]
    public void BubbleIsPMinusOneOverMPlusPMinusOne(int stages, int microBatches, double expected) =>
        Assert.Equal(expected, CostModel.BubbleFraction(stages, microBatches), 12);

    [Fact]
    public void ModelStatesFollowZerosFormulasInFloat32()
    {
        // Ψ = 1000 parameters over 4 data-parallel ranks, all float32: parameters 4Ψ, gradients 4Ψ, Adam moments 8Ψ
        Assert.Equal(16000, CostModel.ModelStateBytes(1000, 4, 0));
        Assert.Equal(4000 + 4000 + 8000 / 4, CostModel.ModelStateBytes(1000, 4, 1));
        Assert.Equal(4000 + (4000 + 8000) / 4, CostModel.ModelStateBytes(1000, 4, 2));
        Assert.Equal(16000 / 4, CostModel.ModelStateBytes(1000, 4, 3));
        // with one rank every stage is plain data parallelism
        for (int zero = 0; zero <= 3; zero++)
            Assert.Equal(16000, CostModel.ModelStateBytes(1000, 1, zero));
        // the target: ZeRO-3 at 4 ranks holds at most 30% of what plain data parallelism holds
        Assert.True(CostModel.ModelStateBytes(1e6, 4, 3) <= 0.3 * CostModel.ModelStateBytes(1e6, 4, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => CostModel.ModelStateBytes(1000, 4, 4));
    }

    [Fact]
    public void FlopsPerTokenIsNanoGptsRule() =>
        // 6Ψ + 12·layers·dim·T: Ψ = 1e6, 4 layers × 128 at T = 64
        Assert.Equal(6e6 + 12.0 * 4 * 128 * 64, CostModel.FlopsPerToken(1e6, 4, 128, 64));
}
