using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Kiln.Distributed;
using Kiln.Distributed.Planning;
using Kiln.Training;

namespace Kiln.Cli.Commands;

/// <summary>
/// kiln plan: the fastest ways to split a training job over N ranks (dp × tp × pp, ZeRO stage, micro-batches,
/// pipeline schedule) by the cost model of <see cref="PlanEstimator"/>, and why the other layouts were set aside.
/// </summary>
internal static class PlanCommand
{
    private sealed class Flags
    {
        public readonly Option<string> Model = new("--model", "-m") { Description = "Model configuration JSON (as kiln train --config)" };
        public readonly Option<string> Preset = new("--preset") { Description = "A published model shape: " + string.Join(", ", ModelPresets.Names) };
        public readonly Option<int> Ranks = new("--ranks", "-n") { Description = "Ranks (processes, one per GPU or CPU socket)", Required = true };
        public readonly Option<double> Memory = new("--mem-per-rank") { Description = "Memory per rank, GB (10⁹ bytes)", Required = true };
        public readonly Option<double> Bandwidth = new("--bandwidth") { Description = "Link bandwidth per rank, GB/s (one figure for every link)", Required = true };
        public readonly Option<double> Flops = new("--flops") { Description = "Peak arithmetic per rank, TFLOP/s", Required = true };
        public readonly Option<double> Efficiency = new("--efficiency") { Description = "Share of the peak the products reach", DefaultValueFactory = _ => 0.5 };
        public readonly Option<double> Latency = new("--latency-us") { Description = "Latency of one message, µs", DefaultValueFactory = _ => 10 };
        public readonly Option<int> Batch = new("--batch") { Description = "Sequences per optimizer step over all replicas; default: 8 per rank" };
        public readonly Option<int> Seq = new("--seq") { Description = "Tokens per sequence; default: the model's context" };
        public readonly Option<string> Recompute = new("--recompute") { Description = "What backward recomputes: none, attn (attention probabilities), block, all", DefaultValueFactory = _ => "attn" };
        public readonly Option<int> Top = new("--top") { Description = "Plans to show", DefaultValueFactory = _ => 5 };
        public readonly Option<bool> Json = new("--json") { Description = "Print one JSON document instead of the tables" };
        public readonly Option<int?> Dp = new("--dp") { Description = "Only layouts with this data-parallel degree" };
        public readonly Option<int?> Tp = new("--tp") { Description = "Only layouts with this tensor-parallel degree" };
        public readonly Option<int?> Pp = new("--pp") { Description = "Only layouts with this many pipeline stages" };
        public readonly Option<int?> Zero = new("--zero") { Description = "Only layouts with this ZeRO stage" };
        public readonly Option<int?> MicroBatches = new("--micro-batches") { Description = "Only layouts with this many micro-batches" };
        public readonly Option<string?> Schedule = new("--schedule") { Description = "Only layouts with this pipeline schedule: gpipe or 1f1b" };

        public IEnumerable<Option> All => [Model, Preset, Ranks, Memory, Bandwidth, Flops, Efficiency, Latency, Batch, Seq, Recompute, Top, Json,
            Dp, Tp, Pp, Zero, MicroBatches, Schedule];
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    public static Command Create(CliIO io)
    {
        var f = new Flags();
        var command = new Command("plan", "Choose data, tensor and pipeline parallelism and ZeRO for a training job by a cost model of compute, communication and memory");
        foreach (var o in f.All)
            command.Options.Add(o);
        command.SetAction(r => Run(io, f, r));
        return command;
    }

    private static int Run(CliIO io, Flags f, ParseResult r)
    {
        var (name, config) = ResolveModel(f, r);
        int ranks = r.GetValue(f.Ranks);
        if (ranks < 1)
            throw new CliException($"--ranks {ranks} must be at least 1");
        var cluster = new ClusterSpec
        {
            Ranks = ranks,
            MemoryBytesPerRank = Positive(r, f.Memory) * 1e9,
            BandwidthBytesPerSecond = Positive(r, f.Bandwidth) * 1e9,
            PeakFlopsPerRank = Positive(r, f.Flops) * 1e12,
            Efficiency = r.GetValue(f.Efficiency) is var e && e > 0 && e <= 1 ? e : throw new CliException($"--efficiency {F(e)} must be above 0 and at most 1"),
            LatencySeconds = r.GetValue(f.Latency) is var l && l >= 0 && double.IsFinite(l) ? l * 1e-6 : throw new CliException($"--latency-us {F(l)} must be zero or positive"),
        };
        int batch = r.GetResult(f.Batch) is { Implicit: false } ? r.GetValue(f.Batch) : 8 * ranks;
        int seq = r.GetResult(f.Seq) is { Implicit: false } ? r.GetValue(f.Seq) : config.Context;
        if (batch < 1)
            throw new CliException($"--batch {batch} must be at least 1");
        if (seq < 1 || seq > config.Context)
            throw new CliException($"--seq {seq} must be between 1 and the model's context of {config.Context}");
        int top = r.GetValue(f.Top);
        if (top < 1)
            throw new CliException($"--top {top} must be at least 1");
        var workload = new TrainingWorkload
        {
            GlobalBatch = batch,
            SequenceLength = seq,
            Recompute = TrainingFlagValues.Recompute(r.GetValue(f.Recompute)!),
        };
        var constraints = new LayoutConstraints
        {
            Dp = r.GetValue(f.Dp),
            Tp = r.GetValue(f.Tp),
            Pp = r.GetValue(f.Pp),
            Zero = r.GetValue(f.Zero),
            MicroBatches = r.GetValue(f.MicroBatches),
            Schedule = r.GetValue(f.Schedule) is { } schedule ? TrainingFlagValues.Schedule(schedule) : null,
        };

        var planner = new ParallelismPlanner(config, cluster, workload);
        var result = planner.Plan(constraints);
        if (result.Considered == 0)
            throw new CliException("no layout matches the --dp/--tp/--pp/--zero/--micro-batches/--schedule constraints");
        var footprint = new ModelFootprint(config);
        if (r.GetValue(f.Json))
            WriteJson(io.Out, name, footprint, cluster, workload, result, top);
        else
            PlanTable.Write(io.Out, name, footprint, cluster, workload, result, top);
        return 0;
    }

    private static (string Name, TrainingConfig Config) ResolveModel(Flags f, ParseResult r)
    {
        string? path = r.GetValue(f.Model), preset = r.GetValue(f.Preset);
        if (path is not null && preset is not null)
            throw new CliException("give the model either with --model or with --preset, not both");
        if (preset is not null)
            return (preset, ModelPresets.Find(preset)
                ?? throw new CliException($"unknown preset '{preset}' (known: {string.Join(", ", ModelPresets.Names)})"));
        if (path is null)
            throw new CliException($"give the model with --model CONFIG.json or --preset NAME ({string.Join(", ", ModelPresets.Names)})");
        if (!File.Exists(path))
            throw new CliException($"config file not found: {path}");
        return (Path.GetFileName(path), TrainingConfig.FromJson(File.ReadAllText(path), path));
    }

    private static double Positive(ParseResult r, Option<double> option)
    {
        double v = r.GetValue(option);
        if (!(v > 0) || !double.IsFinite(v))
            throw new CliException($"{option.Name} {F(v)} must be a positive number");
        return v;
    }

    private static string F(double v) => v.ToString(CultureInfo.InvariantCulture);

    private static void WriteJson(TextWriter o, string name, ModelFootprint footprint, ClusterSpec cluster, TrainingWorkload workload, PlannerResult result, int top)
    {
        var document = new
        {
            Model = name,
            Parameters = footprint.Parameters,
            Cluster = cluster,
            Batch = workload.GlobalBatch,
            Seq = workload.SequenceLength,
            TokensPerStep = workload.TokensPerStep,
            Recompute = workload.Recompute.ToString(),
            Considered = result.Considered,
            Fitting = result.Accepted.Count,
            Plans = result.Accepted.Take(top).Select(p => new
            {
                p.Layout.Dp,
                p.Layout.Tp,
                p.Layout.Pp,
                p.Layout.Zero,
                p.Layout.MicroBatches,
                Schedule = TrainingFlagValues.ScheduleName(p.Layout.Schedule),
                p.MicroBatchSequences,
                p.StepSeconds,
                p.TokensPerSecond,
                p.Mfu,
                p.ComputeSeconds,
                p.TensorParallelSeconds,
                p.PipelineSendSeconds,
                p.BubbleFraction,
                p.BubbleSeconds,
                p.DataParallelSeconds,
                p.DataParallelExposedSeconds,
                p.ModelStateBytes,
                p.GatherBufferBytes,
                p.ActivationBytes,
                p.MemoryBytes,
                p.MicroBatchesInFlight,
                p.FullestStage,
            }),
            Rejected = result.RejectionSummary.Select(g => new { Reason = RejectedPlan.Describe(g.Reason), g.Count, Example = PlanTable.LayoutName(g.Example.Layout) + ": " + g.Example.Detail }),
        };
        o.WriteLine(JsonSerializer.Serialize(document, JsonOptions));
    }
}
