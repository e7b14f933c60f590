using Kiln.Training;

namespace Kiln.Distributed.Planning;

/// <summary>
/// Prices one layout with <see cref="CostModel"/>'s formulas. Per micro-batch, each stage computes its share of the
/// trainer's flops (6Ψ_stage + attention, plus what recomputation adds) divided over the tensor-parallel ranks, then
/// waits for its tensor-parallel all-reduces (two per sub-layer, attention and MLP, one in forward and one in
/// backward, of [micro-batch · T · dim] activations) and its sends to the neighbouring stages (activations forward,
/// their gradients back). The slowest stage's slot repeats M + P − 1 times: M micro-batches and P − 1 in the fill and
/// drain. Data-parallel traffic comes after or during the backward pass:
/// ZeRO 0 all-reduces the gradients once (hidden behind the last micro-batch's backward as far as it goes);
/// ZeRO 1 reduce-scatters them once, hidden the same way, and all-gathers the updated parameters after the step;
/// ZeRO 2 reduce-scatters after every micro-batch (it keeps no whole gradient to accumulate into), each hidden behind
/// its own backward, then all-gathers once; ZeRO 3 all-gathers each micro-batch's parameters in forward and again in
/// backward and reduce-scatters its gradients, the forward gather hidden behind forward compute, the rest behind the
/// backward (DeepSpeed's prefetching). Forward is ⅓ of a micro-batch's compute and backward ⅔.
/// </summary>
public sealed class PlanEstimator
{
    private readonly ModelFootprint _footprint;
    private readonly ClusterSpec _cluster;
    private readonly TrainingWorkload _workload;

    public PlanEstimator(TrainingConfig config, ClusterSpec cluster, TrainingWorkload workload)
    {
        cluster.Validate();
        workload.Validate(config);
        _footprint = new ModelFootprint(config);
        _cluster = cluster;
        _workload = workload;
    }

    public ModelFootprint Footprint => _footprint;

    /// <summary>
    /// The layout's costs. It must already fit the model and the batch (see <see cref="ParallelismPlanner"/>);
    /// memory is reported, not checked.
    /// </summary>
    public PlanEstimate Estimate(ParallelLayout layout)
    {
        var config = _footprint.Config;
        int dp = layout.Dp, tp = layout.Tp, pp = layout.Pp, m = layout.MicroBatches, seq = _workload.SequenceLength;
        if (_workload.GlobalBatch % (dp * m) != 0)
            throw new ArgumentException($"the batch of {_workload.GlobalBatch} does not split into dp {dp} × {m} micro-batches", nameof(layout));
        long sequences = _workload.GlobalBatch / (dp * m);
        double bw = _cluster.BandwidthBytesPerSecond, latency = _cluster.LatencySeconds;
        int layers = config.Layers / pp;
        double activationBytes = CostModel.BytesPerElement * sequences * seq * config.Dim;

        double tpPerMicroBatch = 4.0 * layers * CostModel.RingAllReduceSeconds(activationBytes, tp, bw, latency);
        double sendPerMicroBatch = pp > 1 ? 2 * CostModel.PointToPointSeconds(activationBytes, bw, latency) : 0;

        double slowestSlot = 0, slowestCompute = 0, dpTotal = 0, dpExposed = 0;
        (double States, double Gather, double Activations, int InFlight, int Stage) fullest = default;
        for (int s = 0; s < pp; s++)
        {
            double computePerMicroBatch = sequences * seq * StageFlopsPerToken(s, pp) / tp / _cluster.SustainedFlopsPerRank;
            if (computePerMicroBatch + tpPerMicroBatch > slowestSlot)
                (slowestSlot, slowestCompute) = (computePerMicroBatch + tpPerMicroBatch, computePerMicroBatch);
            double stageParameters = (double)_footprint.StageParameters(s, pp) / tp;
            var (total, exposed) = DataParallelSeconds(layout, CostModel.GradientBytes * stageParameters, computePerMicroBatch);
            dpTotal = Math.Max(dpTotal, total);
            dpExposed = Math.Max(dpExposed, exposed);

            int inFlight = layout.Schedule == PipelineSchedule.GPipe ? m : Math.Min(m, pp - s);
            double states = CostModel.ModelStateBytes(stageParameters, dp, layout.Zero);
            double gather = layout.Zero == 3 && dp > 1
                ? (CostModel.ParameterBytes + CostModel.GradientBytes) * _footprint.LargestGatheredUnit(s, pp) / tp
                : 0;
            double activations = _footprint.StageActivationBytes(s, pp, tp, sequences, seq, inFlight, _workload.Recompute);
            if (s == 0 || states + gather + activations > fullest.States + fullest.Gather + fullest.Activations)
                fullest = (states, gather, activations, inFlight, s);
        }

        double slot = slowestSlot + sendPerMicroBatch;
        double step = (m + pp - 1) * slot + dpExposed;
        double tokensPerSecond = _workload.TokensPerStep / step;
        double trainerFlops = CostModel.FlopsPerToken(_footprint.Parameters, config.Layers, config.Dim, seq);
        return new PlanEstimate
        {
            Layout = layout,
            MicroBatchSequences = sequences,
            StepSeconds = step,
            TokensPerSecond = tokensPerSecond,
            ComputeSeconds = m * slowestCompute,
            TensorParallelSeconds = m * tpPerMicroBatch,
            PipelineSendSeconds = m * sendPerMicroBatch,
            BubbleFraction = CostModel.BubbleFraction(pp, m),
            BubbleSeconds = (pp - 1) * slot,
            DataParallelSeconds = dpTotal,
            DataParallelExposedSeconds = dpExposed,
            ModelStateBytes = fullest.States,
            GatherBufferBytes = fullest.Gather,
            ActivationBytes = fullest.Activations,
            MicroBatchesInFlight = fullest.InFlight,
            FullestStage = fullest.Stage,
            Mfu = trainerFlops * tokensPerSecond / (_cluster.Ranks * _cluster.PeakFlopsPerRank),
        };
    }

    /// <summary>
    /// Flops per token of one stage: 6 per computed parameter, 12·dim·T per layer for attention, and what
    /// recomputation runs again: attention's two forward products (4·dim·T per layer), or a whole block's forward
    /// (2 per parameter + 4·dim·T) for all but the stage's top block.
    /// </summary>
    public double StageFlopsPerToken(int stage, int stages)
    {
        var config = _footprint.Config;
        int layers = config.Layers / stages, seq = _workload.SequenceLength;
        double attentionForward = 4.0 * config.Dim * seq;
        double flops = 6.0 * _footprint.StageComputeParameters(stage, stages) + 3 * attentionForward * layers;
        if ((_workload.Recompute & Recomputation.Attention) != 0)
            flops += attentionForward * layers;
        if ((_workload.Recompute & Recomputation.Block) != 0)
            flops += (layers - 1) * (2.0 * _footprint.LayerParameters + attentionForward);
        return flops;
    }

    private (double Total, double Exposed) DataParallelSeconds(ParallelLayout layout, double gradientBytes, double computePerMicroBatch)
    {
        int n = layout.Dp, m = layout.MicroBatches;
        if (n == 1)
            return (0, 0);
        double bw = _cluster.BandwidthBytesPerSecond, latency = _cluster.LatencySeconds;
        double forward = computePerMicroBatch / 3, backward = computePerMicroBatch - forward;
        // parameters and gradients have the same element count and size, so one byte figure serves both
        double allReduce = CostModel.RingAllReduceSeconds(gradientBytes, n, bw, latency);
        double reduceScatter = CostModel.RingReduceScatterSeconds(gradientBytes, n, bw, latency);
        double allGather = CostModel.RingAllGatherSeconds(gradientBytes, n, bw, latency);
        return layout.Zero switch
        {
            0 => (allReduce, Math.Max(0, allReduce - backward)),
            1 => (reduceScatter + allGather, Math.Max(0, reduceScatter - backward) + allGather),
            2 => (m * reduceScatter + allGather, m * Math.Max(0, reduceScatter - backward) + allGather),
            _ => (m * (2 * allGather + reduceScatter), m * (Math.Max(0, allGather - forward) + Math.Max(0, allGather + reduceScatter - backward))),
        };
    }
}
