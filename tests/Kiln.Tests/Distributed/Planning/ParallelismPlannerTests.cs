using Kiln.Distributed;
using Kiln.Distributed.Planning;
using Kiln.Training;

namespace Kiln.Tests.Distributed.Planning;

public sealed class ParallelismPlannerTests
{
    private static readonly TrainingConfig Llama = new() { Family = ModelFamily.Llama, Layers = 4, Dim = 32, Heads = 4, KvHeads = 2, Ffn = 48, Vocab = 40, Context = 16 };

    private static ClusterSpec Cluster(int ranks, double memory = 1e12) => new()
    {
        Ranks = ranks, MemoryBytesPerRank = memory, BandwidthBytesPerSecond = 5e9, PeakFlopsPerRank = 50e9, Efficiency = 1, LatencySeconds = 2e-6,
    };

    private static readonly TrainingWorkload Workload = new() { GlobalBatch = 8, SequenceLength = 16 };

    [Fact]
    public void AChoiceOverTheMemoryIsRejectedAsOutOfMemory()
    {
        var layout = new ParallelLayout { Dp = 2, Zero = 0, MicroBatches = 1 };
        double needs = new PlanEstimator(Llama, Cluster(2), Workload).Estimate(layout).MemoryBytes;
        var only = new LayoutConstraints { Dp = 2, Zero = 0, MicroBatches = 1 };

        var tight = new ParallelismPlanner(Llama, Cluster(2, needs - 1), Workload).Plan(only);
        Assert.Empty(tight.Accepted);
        var rejected = Assert.Single(tight.Rejected);
        Assert.Equal(RejectionReason.OutOfMemory, rejected.Reason);
        Assert.Equal(layout, rejected.Layout);
        Assert.Contains("GB per rank", rejected.Detail);

        var enough = new ParallelismPlanner(Llama, Cluster(2, needs), Workload).Plan(only);
        Assert.Equal(layout, Assert.Single(enough.Accepted).Layout);
        Assert.Empty(enough.Rejected);
    }

    [Fact]
    public void ZeroLetsAModelFitWherePlainDataParallelismDoesNot()
    {
        var estimator = new PlanEstimator(Llama, Cluster(4), Workload);
        double plain = estimator.Estimate(new ParallelLayout { Dp = 4, MicroBatches = 2 }).MemoryBytes;
        var result = new ParallelismPlanner(Llama, Cluster(4, plain - 1), Workload).Plan(new LayoutConstraints { Dp = 4, MicroBatches = 2 });
        Assert.Equal(RejectionReason.OutOfMemory, Assert.Single(result.Rejected).Reason);
        Assert.Equal([1, 2, 3], result.Accepted.Select(p => p.Layout.Zero).Order());
    }

    [Fact]
    public void LayoutsThatDoNotFitTheModelOrTheBatchAreRejectedWithTheirReason()
    {
        // 12 ranks: tp 3, 6, 12 break the 4 heads; tp 4 the 2 KV heads; pp 3, 6, 12 the 4 layers; dp 12 the batch of 8
        var result = new ParallelismPlanner(Llama, Cluster(12), Workload).Plan();
        Assert.Equal(result.Considered, result.RejectionSummary.Sum(g => g.Count) + result.Accepted.Count);
        foreach (var r in result.Rejected)
        {
            var l = r.Layout;
            var expected = 4 % l.Tp != 0 ? RejectionReason.HeadsNotDivisible
                : 2 % l.Tp != 0 ? RejectionReason.KvHeadsNotDivisible
                : 4 % l.Pp != 0 ? RejectionReason.LayersNotDivisible
                : 8 % l.Dp != 0 ? RejectionReason.BatchNotDivisibleByReplicas
                : RejectionReason.BatchNotDivisibleByMicroBatches;
            Assert.Equal(expected, r.Reason);
            if (expected != RejectionReason.BatchNotDivisibleByReplicas)
                Assert.Throws<TrainingConfigException>(() => l.Validate(Llama, 12, 8 / l.Dp));
        }
        var reasons = result.RejectionSummary.Select(g => g.Reason).ToHashSet();
        Assert.Superset(new HashSet<RejectionReason>
        {
            RejectionReason.HeadsNotDivisible, RejectionReason.KvHeadsNotDivisible, RejectionReason.LayersNotDivisible,
            RejectionReason.BatchNotDivisibleByReplicas,
        }, reasons);
        // the factor 3 of 12 divides none of heads, KV heads, layers and batch: nothing fits
        Assert.Empty(result.Accepted);
    }

    [Fact]
    public void AcceptedPlansAreValidFitAndComeFastestFirst()
    {
        // the median memory of all fitting layouts as the limit: about half of them are out of memory
        var unlimited = new ParallelismPlanner(Llama, Cluster(4), Workload).Plan();
        var memories = unlimited.Accepted.Select(p => p.MemoryBytes).Order().ToArray();
        var cluster = Cluster(4, memories[memories.Length / 2]);
        var result = new ParallelismPlanner(Llama, cluster, Workload).Plan();
        Assert.Equal(memories.Count(m => m <= cluster.MemoryBytesPerRank), result.Accepted.Count);
        Assert.Equal(memories.Count(m => m > cluster.MemoryBytesPerRank), result.Rejected.Count(r => r.Reason == RejectionReason.OutOfMemory));
        // micro-batch counts are the batch's divisors, 1, 2, 4, 8: dp 2 leaves 4 sequences per replica, not 8
        Assert.Contains(result.Rejected, r => r.Reason == RejectionReason.BatchNotDivisibleByMicroBatches);
        for (int i = 0; i < result.Accepted.Count; i++)
        {
            var p = result.Accepted[i];
            p.Layout.Validate(Llama, 4, 8 / p.Layout.Dp);
            Assert.True(p.MemoryBytes <= cluster.MemoryBytesPerRank);
            Assert.True(p.Layout.Zero == 0 || p.Layout.Dp > 1, "ZeRO stages coincide without data parallelism");
            Assert.True(p.Layout.Schedule == PipelineSchedule.OneFOneB || p.Layout.Pp > 1, "schedules coincide with one stage");
            if (i > 0)
                Assert.True(result.Accepted[i - 1].StepSeconds <= p.StepSeconds);
        }
        // every dp × tp × pp = 4 is considered
        var shapes = result.Accepted.Select(p => p.Layout).Concat(result.Rejected.Select(r => r.Layout)).Select(l => (l.Dp, l.Tp, l.Pp)).ToHashSet();
        Assert.Equal(new HashSet<(int, int, int)> { (4, 1, 1), (2, 2, 1), (2, 1, 2), (1, 4, 1), (1, 2, 2), (1, 1, 4) }, shapes);
    }

    [Fact]
    public void ConstraintsLeaveOnlyMatchingLayouts()
    {
        var result = new ParallelismPlanner(Llama, Cluster(4), Workload).Plan(new LayoutConstraints { Tp = 2, Pp = 2, Schedule = PipelineSchedule.GPipe });
        Assert.All(result.Accepted.Select(p => p.Layout).Concat(result.Rejected.Select(r => r.Layout)), l =>
        {
            Assert.Equal((1, 2, 2, PipelineSchedule.GPipe), (l.Dp, l.Tp, l.Pp, l.Schedule));
        });
        Assert.Equal([1, 2, 4, 8], result.Accepted.Select(p => p.Layout.MicroBatches).Order());
    }

    [Fact]
    public void BadMachineFiguresAreRefused()
    {
        Assert.Throws<TrainingConfigException>(() => new ParallelismPlanner(Llama, Cluster(0), Workload));
        Assert.Throws<TrainingConfigException>(() => new ParallelismPlanner(Llama, Cluster(2, -1), Workload));
        Assert.Throws<TrainingConfigException>(() => new ParallelismPlanner(Llama, Cluster(2) with { BandwidthBytesPerSecond = 0 }, Workload));
        Assert.Throws<TrainingConfigException>(() => new ParallelismPlanner(Llama, Cluster(2) with { Efficiency = 1.5 }, Workload));
        Assert.Throws<TrainingConfigException>(() => new ParallelismPlanner(Llama, Cluster(2), Workload with { SequenceLength = 17 }));
    }
}
