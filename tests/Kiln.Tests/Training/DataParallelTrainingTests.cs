using Xunit.Abstractions;
using Kiln.Distributed;
using Kiln.Training;
using Kiln.Training.Data;
using Kiln.Training.Models;
using Kiln.Training.Parallel;

using Kiln.Tests.TestSupport;

namespace Kiln.Tests.Training;

/// <summary>
/// Data parallel training and ZeRO 1–3 over <see cref="LocalCommunicator"/> ranks against single-process training
/// with the matching global batch (D ranks × batch B = one process × batch D·B over the same windows).
/// </summary>
public sealed class DataParallelTrainingTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-dp-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // Llama: every unit's length is a multiple of 4, so shards are exact; GPT-2 with dim 10: (13 + 8)·10 = 210
    // embedding elements do not divide by 4, so its shards carry padding
    private static readonly TrainingConfig Llama = new() { Family = ModelFamily.Llama, Layers = 2, Dim = 16, Heads = 4, KvHeads = 2, Vocab = 13, Context = 8 };
    private static readonly TrainingConfig Gpt2 = new() { Family = ModelFamily.Gpt2, Layers = 2, Dim = 10, Heads = 2, Vocab = 13, Context = 8 };

    private const int Steps = 10;

    private static TrainerOptions Options(int batch, int accum = 1) => new()
    {
        Batch = batch,
        SequenceLength = 8,
        Steps = Steps,
        GradAccum = accum,
        WarmupSteps = 2,
        LearningRate = 1e-2f,
        Clip = 0.5f, // below the early norms, so clipping by the global norm is exercised
        Seed = 7,
    };

    private TokenStream Data() => NoisyCycleTokens.Open(_dir, 800, 3);

    private static TrainingConfig ConfigOf(string family) => family == "llama" ? Llama : Gpt2;

    private sealed record RankRun(double[] Losses, double[] Norms, float[] Weights, ModelStateMemory Held, ModelStateMemory Expected, int Shard, int[] LaunchOrder);

    private RankRun[] RunParallel(TrainingConfig config, int ranks, ZeroStage zero, int batch, int accum = 1, int bucketElements = 300)
    {
        using var data = Data();
        return LocalCommunicator.Run(ranks, comm =>
        {
            var t = DataParallelTrainer.Start(comm, config, Options(batch, accum), zero, data, null, bucketElements);
            var losses = new double[Steps];
            var norms = new double[Steps];
            for (int i = 0; i < Steps; i++)
                (_, losses[i], norms[i], _, _) = t.TrainStep();
            return new RankRun(losses, norms, t.GatherWeights(), t.MemoryHeld(), t.MemoryExpected(), t.Partition?.ShardLength ?? 0,
                t.Buckets?.LaunchOrder.ToArray() ?? []);
        });
    }

    private (double[] Losses, double[] Norms, float[] Weights, float[] Initial) RunSingle(TrainingConfig config, int batch, int accum = 1)
    {
        using var data = Data();
        var t = Trainer.Start(config, Options(batch, accum), data, null);
        var initial = (float[])t.Model.Parameters.Values.Clone();
        var losses = new double[Steps];
        var norms = new double[Steps];
        for (int i = 0; i < Steps; i++)
            (_, losses[i], norms[i], _, _) = t.TrainStep();
        return (losses, norms, t.Model.Parameters.Values, initial);
    }

    /// <summary>
    /// Tolerances come from summation order alone. A parameter's gradient is one sum over the D·B·T rows in a single
    /// process but D partial sums added rank by rank here; the loss is a mean of the same per-token values summed in
    /// another order. The loss therefore agrees to ~1e-8 relative (measured ≤ 2.1e-8; bound 1e-5), and so does the
    /// gradient norm (bound 1e-5 relative) — the norm is what catches a wrong gradient scale (a missing 1/D), to which
    /// Adam's update is blind. Weights: Adam divides m by √v, so for a gradient element formed with heavy
    /// cancellation (a near-zero sum of large terms, relative rounding error up to ~1e-3) the update moves by up to
    /// that fraction of the rate: 10 steps × rate 1e-2 × 1e-3 = 1e-4 absolute, the bound (measured ≤ 1.2e-5). A wrong
    /// shard, slice or missing clip moves weights and losses by ≥ 1e-3.
    /// </summary>
    [Theory]
    [InlineData("llama", 2, ZeroStage.None)]
    [InlineData("llama", 2, ZeroStage.OptimizerStates)]
    [InlineData("llama", 2, ZeroStage.Gradients)]
    [InlineData("llama", 2, ZeroStage.Parameters)]
    [InlineData("llama", 4, ZeroStage.None)]
    [InlineData("llama", 4, ZeroStage.OptimizerStates)]
    [InlineData("llama", 4, ZeroStage.Gradients)]
    [InlineData("llama", 4, ZeroStage.Parameters)]
    [InlineData("gpt2", 2, ZeroStage.None)]
    [InlineData("gpt2", 2, ZeroStage.OptimizerStates)]
    [InlineData("gpt2", 2, ZeroStage.Gradients)]
    [InlineData("gpt2", 2, ZeroStage.Parameters)]
    [InlineData("gpt2", 4, ZeroStage.None)]
    [InlineData("gpt2", 4, ZeroStage.OptimizerStates)]
    [InlineData("gpt2", 4, ZeroStage.Gradients)]
    [InlineData("gpt2", 4, ZeroStage.Parameters)]
    public void MatchesSingleProcessTrainingWithTheGlobalBatch(string family, int ranks, ZeroStage zero)
    {
        var config = ConfigOf(family);
        const int batch = 2;
        var single = RunSingle(config, batch * ranks);
        var runs = RunParallel(config, ranks, zero, batch);
        Compare(single, runs, $"{family} ×{ranks} zero {(int)zero}");
    }

    [Theory]
    [InlineData("llama", ZeroStage.None)]
    [InlineData("gpt2", ZeroStage.Gradients)]
    [InlineData("llama", ZeroStage.Parameters)]
    public void GradientAccumulationMatchesToo(string family, ZeroStage zero)
    {
        var config = ConfigOf(family);
        var single = RunSingle(config, 2 * 2, accum: 2);
        var runs = RunParallel(config, 2, zero, 2, accum: 2);
        Compare(single, runs, $"{family} accum 2 zero {(int)zero}");
    }

    private void Compare((double[] Losses, double[] Norms, float[] Weights, float[] Initial) single, RankRun[] runs, string what)
    {
        double lossError = 0, weightError = 0;
        for (int i = 0; i < Steps; i++)
        {
            lossError = Math.Max(lossError, Math.Abs(runs[0].Losses[i] - single.Losses[i]) / single.Losses[i]);
            Assert.Equal(single.Norms[i], runs[0].Norms[i], 1e-5 * single.Norms[i]);
        }
        for (int i = 0; i < single.Weights.Length; i++)
            weightError = Math.Max(weightError, Math.Abs(runs[0].Weights[i] - single.Weights[i]));
        output.WriteLine($"{what}: max relative loss difference {lossError:E2}, max weight difference {weightError:E2}");
        Assert.InRange(lossError, 0, 1e-5);
        Assert.InRange(weightError, 0, 1e-4);
        // the run moved: the loss fell and the weights left their initialization by far more than the tolerance
        Assert.True(single.Losses[^1] < single.Losses[0] - 0.02, $"loss {single.Losses[0]} → {single.Losses[^1]}");
        Assert.True(single.Weights.Zip(single.Initial).Max(p => Math.Abs(p.First - p.Second)) > 1e-2);
        // every rank reports the same loss and ends with the same weights, bit for bit
        foreach (var r in runs)
        {
            Assert.Equal(runs[0].Losses, r.Losses);
            Assert.Equal(runs[0].Weights, r.Weights);
        }
    }

    /// <summary>
    /// Measured bytes (lengths of the arrays each rank holds) equal ZeRO's formulas in fp32 with the shard S; S is
    /// Ψ/N exactly when N divides every unit (the Llama config) and at most one padding element per unit above it.
    /// </summary>
    [Theory]
    [InlineData("llama", 2)]
    [InlineData("llama", 4)]
    [InlineData("gpt2", 2)]
    [InlineData("gpt2", 4)]
    public void ModelStateMemoryFollowsZeroFormulas(string family, int ranks)
    {
        var config = ConfigOf(family);
        long psi = TrainableModel<float>.Create(config, null).Parameters.Count;
        int units = config.Layers + 2;
        var totals = new Dictionary<ZeroStage, long>();
        foreach (var zero in Enum.GetValues<ZeroStage>())
        {
            var runs = RunParallel(config, ranks, zero, batch: 1);
            foreach (var r in runs)
            {
                Assert.Equal(r.Expected, r.Held);
                if (zero != ZeroStage.None)
                {
                    Assert.InRange((long)r.Shard * ranks, psi, psi + (long)units * (ranks - 1));
                    if (family == "llama")
                        Assert.Equal(psi / ranks, r.Shard);
                }
            }
            // the formulas with Ψ written out: 16Ψ, 8Ψ + 8Ψ/N, 4Ψ + 12Ψ/N, 16Ψ/N (+ padding, ≤ 16 bytes per unit per rank)
            double perRank = zero switch
            {
                ZeroStage.None => 16.0 * psi,
                ZeroStage.OptimizerStates => 8.0 * psi + 8.0 * psi / ranks,
                ZeroStage.Gradients => 4.0 * psi + 12.0 * psi / ranks,
                _ => 16.0 * psi / ranks,
            };
            Assert.InRange(runs[0].Held.Total, perRank, perRank + 16.0 * units);
            totals[zero] = runs[0].Held.Total;
            output.WriteLine($"{family} Ψ={psi} N={ranks} zero {(int)zero}: {runs[0].Held} total {runs[0].Held.Total} (formula {perRank:F0})");
        }
        if (ranks == 4)
            Assert.True(totals[ZeroStage.Parameters] <= 0.30 * totals[ZeroStage.None], $"ZeRO-3 holds {totals[ZeroStage.Parameters]} of DP's {totals[ZeroStage.None]}");
    }

    /// <summary>
    /// The hooks fire where the overlap needs them: units finish in backward order (head, top block … embedding), a
    /// unit is used only between BeforeUse and AfterUse (ZeRO-3 throws otherwise, and matches above), and with a small
    /// bucket cap the all-reduces start bucket by bucket from inside the backward pass.
    /// </summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void BackwardReportsUnitsInOrderAndBucketsLaunchDuringIt(string family)
    {
        var config = ConfigOf(family);
        var model = TrainableModel<float>.Create(config, null);
        var units = model.Units;
        Assert.Equal(config.Layers + 2, units.Length);
        Assert.Equal(0, units[0].Offset);
        for (int i = 1; i < units.Length; i++)
            Assert.Equal(units[i - 1].End, units[i].Offset);
        Assert.Equal(model.Parameters.Count, units[^1].End);

        var recorder = new Recorder();
        model.UnitHooks = recorder;
        model.Initialize(new TrainingRandom(1));
        int[] tokens = Enumerable.Range(0, 8).Select(i => i % 13).ToArray();
        model.Forward(tokens, tokens, 1, 8);
        model.Backward();
        var final = recorder.Events.Where(e => e.StartsWith("final", StringComparison.Ordinal)).ToArray();
        Assert.Equal(["final head", "final block 1", "final block 0", "final embedding"], final);
        // the head's gradient is final only after the final norm's backward; GPT-2's tied embedding only at the very end
        Assert.True(recorder.Events.IndexOf("final head") > recorder.Events.LastIndexOf("after head backward"));
        Assert.Equal(recorder.Events.Count - 1, recorder.Events.IndexOf("final embedding"));

        var runs = RunParallel(config, 2, ZeroStage.None, batch: 1, bucketElements: 300);
        var buckets = new GradientBuckets(LocalCommunicator.CreateWorld(1)[0], new float[model.Parameters.Count], units, 300).Buckets.ToArray();
        Assert.True(buckets.Length >= 2, $"{buckets.Length} bucket(s)");
        Assert.Equal(model.Parameters.Count, buckets.Sum(b => b.Length));
        Assert.Equal(Enumerable.Range(0, buckets.Length), runs[0].LaunchOrder);
    }

    private sealed class Recorder : IParameterUnitHooks
    {
        public List<string> Events { get; } = [];
        public void BeforeUse(ParameterUnit unit, bool backward) => Events.Add($"before {unit.Name} {(backward ? "backward" : "forward")}");
        public void AfterUse(ParameterUnit unit, bool backward) => Events.Add($"after {unit.Name} {(backward ? "backward" : "forward")}");
        public void GradientsFinal(ParameterUnit unit) => Events.Add($"final {unit.Name}");
    }

    [Fact]
    public void ShardSegmentsCoverEachParameterOnceWithItsTensorsDecay()
    {
        var model = TrainableModel<float>.Create(Gpt2, null);
        var owner = new int[model.Parameters.Count];
        for (int rank = 0; rank < 4; rank++)
        {
            var p = new ZeroPartition(model.Units, model.Parameters.Tensors, rank, 4);
            foreach (var s in p.Segments)
                for (int i = s.GlobalOffset; i < s.GlobalOffset + s.Length; i++)
                {
                    owner[i]++;
                    var tensor = model.Parameters.Tensors.Single(t => i >= t.Offset && i < t.Offset + t.Length);
                    Assert.Equal(tensor.Shape.Length >= 2, s.Decays);
                }
        }
        Assert.All(owner, n => Assert.Equal(1, n));
    }

    /// <summary>Stage 3 lends a tensor only while its unit is gathered, and its gradient only during the unit's backward.</summary>
    [Fact]
    public void ShardedParametersAreReadableOnlyWhileGathered()
    {
        LocalCommunicator.Run(2, comm =>
        {
            var model = TrainableModel<float>.Create(Llama, null);
            var partition = new ZeroPartition(model.Units, model.Parameters.Tensors, comm.Rank, comm.Size);
            var state = new ShardedModelState(comm, partition, model.Parameters, model.Units, shardParameters: true);
            var p = model.Parameters["blk.1.ffn_down.weight"];
            Assert.Throws<InvalidOperationException>(() => state.Value(p));
            Assert.Throws<InvalidOperationException>(() => state.Gradient(p));
            state.ShardValues!.AsSpan().Fill(comm.Rank + 1);
            var unit = ParameterUnit.Of(model.Units, p);
            state.BeforeUse(unit, backward: false);
            // the gathered unit holds rank 0's block then rank 1's: the tensor's elements come from whichever owns them
            var shard = partition.Units[unit.Index];
            var value = state.Value(p).Span;
            for (int i = 0; i < value.Length; i++)
                Assert.Equal(p.Offset - unit.Offset + i < shard.BlockLength ? 1f : 2f, value[i]);
            Assert.Throws<InvalidOperationException>(() => state.Gradient(p));
            state.AfterUse(unit, backward: false);
            Assert.Throws<InvalidOperationException>(() => state.Value(p));
            Assert.False(model.Parameters.ValuesAllocated);
            Assert.False(model.Parameters.GradientsAllocated);
        });
    }
}
