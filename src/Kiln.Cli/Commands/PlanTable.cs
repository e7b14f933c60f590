using System.Globalization;
using Kiln.Distributed;
using Kiln.Distributed.Planning;

namespace Kiln.Cli.Commands;

/// <summary>Renders a <see cref="PlannerResult"/> as text: the job, the best plans, and the rejections by reason.</summary>
internal static class PlanTable
{
    public static void Write(TextWriter o, string name, ModelFootprint footprint, ClusterSpec cluster, TrainingWorkload workload, PlannerResult result, int top)
    {
        var config = footprint.Config;
        o.WriteLine(I($"model: {name}, {config.Family.ToString().ToLowerInvariant()} {config.Layers} layers × {config.Dim}, {config.Heads} heads ({config.KvHeadCount} KV), FFN {config.FfnDim}, vocab {config.Vocab}: {footprint.Parameters:N0} parameters"));
        o.WriteLine(I($"ranks: {cluster.Ranks} × {cluster.MemoryBytesPerRank / 1e9:0.##} GB, {cluster.PeakFlopsPerRank / 1e12:0.###} TFLOP/s at {cluster.Efficiency:P0}, links {cluster.BandwidthBytesPerSecond / 1e9:0.##} GB/s + {cluster.LatencySeconds * 1e6:0.##} µs"));
        o.WriteLine(I($"step: {workload.GlobalBatch} sequences × {workload.SequenceLength} tokens = {workload.TokensPerStep:N0} tokens, recompute {TrainingFlagValues.RecomputeName(workload.Recompute)}, float32 states and activations"));
        o.WriteLine(I($"{result.Considered} layouts considered, {result.Accepted.Count} fit"));
        if (result.Accepted.Count > 0)
        {
            o.WriteLine();
            var rows = new List<string[]>
            {
                new[] { "#", "dp", "tp", "pp", "zero", "M", "sched", "mb", "step s", "tokens/s", "MFU", "compute", "bubble", "tp comm", "pp send", "dp exposed/all", "memory/rank", "states", "activations" },
            };
            int rank = 1;
            foreach (var p in result.Accepted.Take(top))
            {
                var l = p.Layout;
                rows.Add([I($"{rank++}"), I($"{l.Dp}"), I($"{l.Tp}"), I($"{l.Pp}"), I($"{l.Zero}"), I($"{l.MicroBatches}"), TrainingFlagValues.ScheduleName(l.Schedule), I($"{p.MicroBatchSequences}"),
                    Seconds(p.StepSeconds), I($"{p.TokensPerSecond:N0}"), I($"{p.Mfu:P0}"), Seconds(p.ComputeSeconds),
                    l.Pp > 1 ? I($"{Seconds(p.BubbleSeconds)} ({p.BubbleFraction:P0})") : "-",
                    l.Tp > 1 ? Seconds(p.TensorParallelSeconds) : "-", l.Pp > 1 ? Seconds(p.PipelineSendSeconds) : "-",
                    l.Dp > 1 ? $"{Seconds(p.DataParallelExposedSeconds)}/{Seconds(p.DataParallelSeconds)}" : "-",
                    Bytes(p.MemoryBytes), Bytes(p.ModelStateBytes), Bytes(p.ActivationBytes)]);
            }
            Render(o, rows);
            o.WriteLine();
            o.WriteLine("M: micro-batches per replica, mb: sequences in each; times are per step on the slowest stage; memory is the fullest rank's (states: ZeRO's parameters + gradients + Adam moments).");
        }
        else
        {
            o.WriteLine();
            o.WriteLine("no layout fits: more ranks, more memory per rank, a smaller batch or sequence, or --recompute block would help.");
        }
        if (result.Rejected.Count > 0)
        {
            o.WriteLine();
            o.WriteLine(I($"rejected {result.Rejected.Count}:"));
            foreach (var (reason, count, example) in result.RejectionSummary)
                o.WriteLine(I($"  {count,6}  {RejectedPlan.Describe(reason)}, e.g. {LayoutName(example.Layout)}: {example.Detail}"));
        }
    }

    public static string LayoutName(ParallelLayout l) =>
        I($"dp {l.Dp} tp {l.Tp} pp {l.Pp} zero {l.Zero} M {l.MicroBatches}{(l.Pp > 1 ? " " + TrainingFlagValues.ScheduleName(l.Schedule) : "")}");

    private static string Seconds(double s) => s switch
    {
        >= 100 => I($"{s:0}"),
        >= 1 => I($"{s:0.00}"),
        >= 1e-3 => I($"{s * 1e3:0.0}ms"),
        _ => I($"{s * 1e6:0}µs"),
    };

    private static string Bytes(double b) => b switch
    {
        >= 1e9 => I($"{b / 1e9:0.00} GB"),
        >= 1e6 => I($"{b / 1e6:0.0} MB"),
        _ => I($"{b / 1e3:0.0} kB"),
    };

    private static string I(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    private static void Render(TextWriter o, List<string[]> rows)
    {
        int[] widths = Enumerable.Range(0, rows[0].Length).Select(c => rows.Max(r => r[c].Length)).ToArray();
        foreach (var row in rows)
            o.WriteLine(string.Join("  ", row.Select((cell, c) => c == 6 ? cell.PadRight(widths[c]) : cell.PadLeft(widths[c]))).TrimEnd());
    }
}
