using Kiln.Distributed;
using Kiln.Distributed.Planning;
using Kiln.Training;

namespace Kiln.Tests.Distributed.Planning;

/// <summary>Whole estimates of small layouts against the cost model's equations written out by hand.</summary>
public sealed class PlanEstimatorTests
{
    private static readonly TrainingConfig Llama = new() { Family = ModelFamily.Llama, Layers = 4, Dim = 32, Heads = 4, KvHeads = 2, Ffn = 48, Vocab = 40, Context = 16 };
    private const double Bandwidth = 1e6, Latency = 1e-5, Sustained = 0.5e9;

    private static ClusterSpec Cluster(int ranks) => new()
    {
        Ranks = ranks, MemoryBytesPerRank = 1e12, BandwidthBytesPerSecond = Bandwidth, PeakFlopsPerRank = 1e9, Efficiency = 0.5, LatencySeconds = Latency,
    };

    private static readonly ModelFootprint Footprint = new(Llama);

    [Fact]
    public void DataParallelIsComputePlusTheUnhiddenAllReduce()
    {
        var workload = new TrainingWorkload { GlobalBatch = 8, SequenceLength = 16, Recompute = Recomputation.None };
        var e = new PlanEstimator(Llama, Cluster(4), workload).Estimate(new ParallelLayout { Dp = 4 });
        double psi = Footprint.Parameters;
        // two sequences of 16 tokens per replica at 6Ψ + 12·layers·dim·T flops each
        double compute = 2 * 16 * (6 * psi + 12.0 * 4 * 32 * 16) / Sustained;
        double allReduce = 2.0 * 3 / 4 * (4 * psi) / Bandwidth + 2 * 3 * Latency;
        double exposed = allReduce - 2.0 / 3 * compute;
        Assert.True(exposed > 0, "the link is slow enough that the all-reduce outlasts the backward pass");
        Assert.Equal(compute, e.ComputeSeconds, 12);
        Assert.Equal(allReduce, e.DataParallelSeconds, 12);
        Assert.Equal(exposed, e.DataParallelExposedSeconds, 12);
        Assert.Equal(compute + exposed, e.StepSeconds, 12);
        Assert.Equal(8 * 16 / (compute + exposed), e.TokensPerSecond, 6);
        Assert.Equal(16 * psi, e.ModelStateBytes);
        Assert.Equal(Footprint.StageActivationBytes(0, 1, 1, 2, 16, 1, Recomputation.None), e.ActivationBytes);
        Assert.Equal(0, e.BubbleFraction);
        Assert.Equal(0, e.TensorParallelSeconds);
    }

    [Fact]
    public void TensorAndPipelineParallelRepeatTheSlowestStagesSlotMPlusPMinusOneTimes()
    {
        var workload = new TrainingWorkload { GlobalBatch = 8, SequenceLength = 16, Recompute = Recomputation.Attention };
        var layout = new ParallelLayout { Tp = 2, Pp = 2, MicroBatches = 2, Schedule = PipelineSchedule.GPipe };
        var e = new PlanEstimator(Llama, Cluster(4), workload).Estimate(layout);

        // 4 sequences per micro-batch: 64 rows of 32 floats cross each link
        double activation = 4.0 * 64 * 32;
        // 2 layers per stage × 2 sub-layers × forward and backward, each a 2-rank ring all-reduce
        double tpPerMicroBatch = 2 * 4 * (2.0 * 1 / 2 * activation / Bandwidth + 2 * Latency);
        double sendPerMicroBatch = 2 * (activation / Bandwidth + Latency);
        double StageCompute(int s) =>
            4 * 16 * (6.0 * Footprint.StageComputeParameters(s, 2) + 12.0 * 2 * 32 * 16 + 4.0 * 2 * 32 * 16) / 2 / Sustained;
        double slowest = Math.Max(StageCompute(0), StageCompute(1));
        double slot = slowest + tpPerMicroBatch + sendPerMicroBatch;
        Assert.Equal(3 * slot, e.StepSeconds, 12);
        Assert.Equal(2 * slowest, e.ComputeSeconds, 12);
        Assert.Equal(2 * tpPerMicroBatch, e.TensorParallelSeconds, 12);
        Assert.Equal(2 * sendPerMicroBatch, e.PipelineSendSeconds, 12);
        Assert.Equal(slot, e.BubbleSeconds, 12);
        Assert.Equal(1.0 / 3, e.BubbleFraction, 12);

        // GPipe holds both micro-batches on every stage; states are split over tp, not dp (dp = 1)
        double Memory(int s) => 16.0 * Footprint.StageParameters(s, 2) / 2 + Footprint.StageActivationBytes(s, 2, 2, 4, 16, 2, Recomputation.Attention);
        Assert.Equal(Math.Max(Memory(0), Memory(1)), e.MemoryBytes, 6);
        Assert.Equal(2, e.MicroBatchesInFlight);
    }

    [Fact]
    public void OneFOneBHoldsPMinusStageMicroBatchesAtTheSameSpeed()
    {
        var workload = new TrainingWorkload { GlobalBatch = 8, SequenceLength = 16 };
        var estimator = new PlanEstimator(Llama, Cluster(2), workload);
        var gpipe = estimator.Estimate(new ParallelLayout { Pp = 2, MicroBatches = 8, Schedule = PipelineSchedule.GPipe });
        var oneFOneB = estimator.Estimate(new ParallelLayout { Pp = 2, MicroBatches = 8, Schedule = PipelineSchedule.OneFOneB });
        Assert.Equal(gpipe.StepSeconds, oneFOneB.StepSeconds);
        Assert.Equal(8, gpipe.MicroBatchesInFlight);
        Assert.True(oneFOneB.MicroBatchesInFlight <= 2);
        Assert.True(oneFOneB.ActivationBytes < gpipe.ActivationBytes);
    }

    [Fact]
    public void ZeroThreeGathersParametersPerMicroBatchAndHidesWhatFitsBehindCompute()
    {
        var workload = new TrainingWorkload { GlobalBatch = 8, SequenceLength = 16, Recompute = Recomputation.None };
        var e = new PlanEstimator(Llama, Cluster(2), workload).Estimate(new ParallelLayout { Dp = 2, Zero = 3, MicroBatches = 2 });
        double psi = Footprint.Parameters;
        double computePerMicroBatch = 2 * 16 * (6 * psi + 12.0 * 4 * 32 * 16) / Sustained;
        double gather = 0.5 * 4 * psi / Bandwidth + Latency, scatter = gather;
        double exposed = 2 * (Math.Max(0, gather - computePerMicroBatch / 3) + Math.Max(0, gather + scatter - computePerMicroBatch * 2 / 3));
        Assert.Equal(2 * (2 * gather + scatter), e.DataParallelSeconds, 12);
        Assert.Equal(exposed, e.DataParallelExposedSeconds, 12);
        Assert.Equal(2 * computePerMicroBatch + exposed, e.StepSeconds, 12);
        Assert.Equal(16 * psi / 2, e.ModelStateBytes);
        // the largest unit gathered whole is the 40 × 32 embedding or output matrix, or a layer if larger
        Assert.Equal(8.0 * Math.Max(Footprint.LayerParameters, 32 + 40 * 32), e.GatherBufferBytes);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ZeroOneAndTwoAddTheParameterAllGatherAfterTheStep(int zero)
    {
        var workload = new TrainingWorkload { GlobalBatch = 8, SequenceLength = 16, Recompute = Recomputation.None };
        var e = new PlanEstimator(Llama, Cluster(2), workload).Estimate(new ParallelLayout { Dp = 2, Zero = zero, MicroBatches = 4 });
        double psi = Footprint.Parameters;
        double backward = 1 * 16 * (6 * psi + 12.0 * 4 * 32 * 16) / Sustained * 2 / 3;
        double half = 0.5 * 4 * psi / Bandwidth + Latency;
        int scatters = zero == 1 ? 1 : 4; // stage 2 keeps no whole gradient to accumulate into
        Assert.Equal(scatters * half + half, e.DataParallelSeconds, 12);
        Assert.Equal(scatters * Math.Max(0, half - backward) + half, e.DataParallelExposedSeconds, 12);
        Assert.Equal(zero == 1 ? 8 * psi + 8 * psi / 2 : 4 * psi + 12 * psi / 2, e.ModelStateBytes);
    }
}
