using Kiln.Training;

namespace Kiln.Distributed.Planning;

/// <summary>
/// Chooses how to split a training job over N ranks, in the spirit of Alpa's search over inter- and intra-operator
/// parallelism but exhaustive and with a closed-form cost model (<see cref="PlanEstimator"/>): every dp × tp × pp = N,
/// ZeRO stage (only 0 without data parallelism, where the stages coincide), micro-batch count dividing the batch and
/// pipeline schedule (only 1F1B with one stage: with a single stage it is gradient accumulation, and GPipe would
/// only hold more activations). Layouts that do not fit the model (<see cref="ParallelLayout.Validate"/>'s rules), the
/// batch or the memory are kept with their reason.
/// </summary>
public sealed class ParallelismPlanner(TrainingConfig config, ClusterSpec cluster, TrainingWorkload workload)
{
    private readonly PlanEstimator _estimator = new(config, cluster, workload);

    public PlannerResult Plan(LayoutConstraints? constraints = null)
    {
        constraints ??= LayoutConstraints.None;
        var accepted = new List<PlanEstimate>();
        var rejected = new List<RejectedPlan>();
        int n = cluster.Ranks, batch = workload.GlobalBatch;
        foreach (int pp in Divisors(n))
        foreach (int tp in Divisors(n / pp))
        {
            int dp = n / (pp * tp);
            for (int zero = 0; zero <= (dp > 1 ? 3 : 0); zero++)
            foreach (int m in Divisors(batch))
            foreach (var schedule in pp > 1 ? [PipelineSchedule.GPipe, PipelineSchedule.OneFOneB] : new[] { PipelineSchedule.OneFOneB })
            {
                var layout = new ParallelLayout { Dp = dp, Tp = tp, Pp = pp, Zero = zero, MicroBatches = m, Schedule = schedule };
                if (!constraints.Admits(layout))
                    continue;
                if (Check(layout) is { } rejection)
                {
                    rejected.Add(rejection);
                    continue;
                }
                var estimate = _estimator.Estimate(layout);
                if (estimate.MemoryBytes > cluster.MemoryBytesPerRank)
                    rejected.Add(new RejectedPlan(layout, RejectionReason.OutOfMemory,
                        $"needs {estimate.MemoryBytes / 1e9:F1} GB per rank (model states {estimate.ModelStateBytes / 1e9:F1}, " +
                        $"activations {estimate.ActivationBytes / 1e9:F1}{(estimate.GatherBufferBytes > 0 ? $", ZeRO-3 gather {estimate.GatherBufferBytes / 1e9:F1}" : "")}); " +
                        $"{cluster.MemoryBytesPerRank / 1e9:F1} GB available"));
                else
                    accepted.Add(estimate);
            }
        }
        accepted.Sort((a, b) => a.StepSeconds != b.StepSeconds ? a.StepSeconds.CompareTo(b.StepSeconds)
            : a.MemoryBytes != b.MemoryBytes ? a.MemoryBytes.CompareTo(b.MemoryBytes)
            : (a.Layout.Tp * a.Layout.Pp).CompareTo(b.Layout.Tp * b.Layout.Pp));
        return new PlannerResult(accepted, rejected);
    }

    /// <summary>The first rule the layout breaks, in <see cref="ParallelLayout.Validate"/>'s order, or null.</summary>
    public RejectedPlan? Check(ParallelLayout layout)
    {
        int tp = layout.Tp, pp = layout.Pp;
        RejectedPlan Reject(RejectionReason reason, string detail) => new(layout, reason, detail);
        if (config.Heads % tp != 0)
            return Reject(RejectionReason.HeadsNotDivisible, $"{config.Heads} heads do not split over tp {tp}");
        if (config.KvHeadCount % tp != 0)
            return Reject(RejectionReason.KvHeadsNotDivisible, $"{config.KvHeadCount} KV heads do not split over tp {tp}");
        if (config.FfnDim % tp != 0)
            return Reject(RejectionReason.FfnNotDivisible, $"feed-forward width {config.FfnDim} does not split over tp {tp}");
        if (config.Layers % pp != 0)
            return Reject(RejectionReason.LayersNotDivisible, $"{config.Layers} layers do not split into {pp} stages");
        if (workload.GlobalBatch % layout.Dp != 0)
            return Reject(RejectionReason.BatchNotDivisibleByReplicas, $"batch {workload.GlobalBatch} does not split over dp {layout.Dp}");
        int perReplica = workload.GlobalBatch / layout.Dp;
        if (perReplica % layout.MicroBatches != 0)
            return Reject(RejectionReason.BatchNotDivisibleByMicroBatches, $"{perReplica} sequences per replica do not split into {layout.MicroBatches} micro-batches");
        try
        {
            layout.Validate(config, cluster.Ranks, perReplica);
        }
        catch (TrainingConfigException e)
        {
            return Reject(RejectionReason.InvalidLayout, e.Message);
        }
        return null;
    }

    private static IEnumerable<int> Divisors(int n)
    {
        for (int d = 1; d <= n; d++)
            if (n % d == 0)
                yield return d;
    }
}
