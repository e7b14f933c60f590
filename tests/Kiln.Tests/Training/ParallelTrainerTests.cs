using Kiln.Distributed;
using Kiln.Training;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;
using Kiln.Training.Parallel;

using Kiln.Tests.TestSupport;

namespace Kiln.Tests.Training;

/// <summary>
/// 3-D parallel training (dp × tp × pp, ZeRO 0/1; ranks as threads, no worker pool) against single-process training
/// with the same global batch and options, and checkpoints carried between layouts.
/// </summary>
public sealed class ParallelTrainerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-3d-").FullName;

    // written before any rank's thread opens it
    public ParallelTrainerTests() => Data().Dispose();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const int Steps = 10;
    private const int Batch = 4;

    private static TrainingConfig Config(ModelFamily family) => new()
    {
        // Llama with GQA: 4 query heads over 2 KV heads, so tp 2 gives each rank 2 query heads on 1 KV head
        Family = family, Layers = 4, Dim = 16, Heads = 4, KvHeads = family == ModelFamily.Llama ? 2 : 0, Vocab = 13, Context = 8,
    };

    private static TrainerOptions Options(int gradAccum = 1) => new()
    {
        Batch = Batch,
        GradAccum = gradAccum,
        SequenceLength = 8,
        Steps = 20,
        WarmupSteps = 3,
        LearningRate = 1e-2f,
        Clip = 0.5f, // low enough that some steps clip: the global norm over stages and shards is exercised too
        Seed = 7,
    };

    private TokenStream Data() => NoisyCycleTokens.Open(_dir, 400, 5);

    private sealed record Run(double[] Losses, double[] Norms, TrainingCheckpoint? Checkpoint);

    private static ParallelLayout Layout(int dp, int tp, int pp, int micro, PipelineSchedule schedule, int zero = 0) =>
        new() { Dp = dp, Tp = tp, Pp = pp, MicroBatches = micro, Schedule = schedule, Zero = zero };

    /// <summary>Runs <paramref name="steps"/> steps under a layout (from the start or a checkpoint); returns each rank's losses and what Gather gave it.</summary>
    private Run[] RunParallel(TrainingConfig config, ParallelLayout layout, int steps, TrainingCheckpoint? from = null, int gradAccum = 1,
        bool synchronousSends = false) =>
        LocalCommunicator.Run(layout.Ranks, local =>
        {
            var world = synchronousSends ? new SynchronousSendCommunicator(local) : local;
            using var data = Data();
            using var t = from is null
                ? ParallelTrainer.Start(world, layout, config, Options(gradAccum), data, null)
                : ParallelTrainer.Resume(world, layout, from, config, Options(gradAccum), data, null);
            var losses = new double[steps];
            var norms = new double[steps];
            for (int s = 0; s < steps; s++)
                (losses[s], norms[s]) = t.TrainStep() is var r ? (r.Loss, r.GradientNorm) : default;
            return new Run(losses, norms, t.Gather());
        });

    private Run RunSingle(TrainingConfig config, int steps, TrainingCheckpoint? from = null, int gradAccum = 1)
    {
        using var data = Data();
        var t = from is null ? Trainer.Start(config, Options(gradAccum), data, null) : Trainer.Resume(from, config, Options(gradAccum), data, null);
        var losses = new double[steps];
        var norms = new double[steps];
        for (int s = 0; s < steps; s++)
            (losses[s], norms[s]) = t.TrainStep() is var r ? (r.Loss, r.GradientNorm) : default;
        return new Run(losses, norms, t.Snapshot());
    }

    private static double LargestDifference(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double worst = 0;
        for (int i = 0; i < a.Length; i++)
            worst = Math.Max(worst, Math.Abs(a[i] - b[i]));
        return worst;
    }

    public static TheoryData<ModelFamily, int, int, int, int, PipelineSchedule, int> Layouts() => new()
    {
        { ModelFamily.Llama, 2, 2, 1, 1, PipelineSchedule.OneFOneB, 0 },
        { ModelFamily.Gpt2, 2, 2, 1, 2, PipelineSchedule.GPipe, 0 },
        { ModelFamily.Llama, 2, 1, 2, 2, PipelineSchedule.GPipe, 0 },
        { ModelFamily.Llama, 2, 1, 2, 2, PipelineSchedule.OneFOneB, 1 },
        { ModelFamily.Gpt2, 2, 1, 2, 2, PipelineSchedule.OneFOneB, 0 },
        { ModelFamily.Llama, 1, 2, 2, 4, PipelineSchedule.GPipe, 0 },
        { ModelFamily.Gpt2, 1, 2, 2, 4, PipelineSchedule.OneFOneB, 0 },
        { ModelFamily.Llama, 2, 2, 2, 2, PipelineSchedule.OneFOneB, 1 },
        { ModelFamily.Gpt2, 2, 2, 2, 2, PipelineSchedule.GPipe, 0 },
        { ModelFamily.Gpt2, 2, 2, 2, 1, PipelineSchedule.OneFOneB, 1 },
    };

    /// <summary>
    /// Same data, same steps as one process with the global batch: only summation orders differ (micro-batch and
    /// replica gradients added separately, tensor-parallel partial products summed across ranks, the tied wte's two
    /// halves added at the end, the norm's squares in another order), each a rounding of float32 terms that AdamW's
    /// division by √v can enlarge on elements with tiny gradients. Worst seen over these layouts after 10 steps: loss
    /// 4.4e-7 relative, norm 7.6e-6 relative, weights 1.8e-5 absolute, first moment 1.7e-6. Tolerances about ten
    /// times those: loss 5e-6 relative, norm 1e-4 relative, weights 2e-4 absolute (a fiftieth of one step's lr of
    /// 1e-2: a wrong shard, stage, scale or replica slice moves whole tensors by about the lr), moments 2e-5.
    /// </summary>
    [Theory]
    [MemberData(nameof(Layouts))]
    public void MatchesSingleProcessTraining(ModelFamily family, int dp, int tp, int pp, int micro, PipelineSchedule schedule, int zero)
    {
        var config = Config(family);
        var single = RunSingle(config, Steps);
        var ranks = RunParallel(config, Layout(dp, tp, pp, micro, schedule, zero), Steps);
        Assert.True(single.Losses[^1] < single.Losses[0] - 0.05, "the reference run does not learn");
        Assert.Contains(single.Norms, n => n > Options().Clip);
        foreach (var r in ranks)
        {
            Assert.Equal(ranks[0].Losses, r.Losses); // the same bits on every rank
            Assert.Equal(ranks[0].Norms, r.Norms);
        }
        Assert.Equal(single.Losses[0], ranks[0].Losses[0], 1e-6 * single.Losses[0]); // before any update: rounding of the mean only
        for (int s = 0; s < Steps; s++)
        {
            Assert.True(Math.Abs(single.Losses[s] - ranks[0].Losses[s]) <= 5e-6 * single.Losses[s], $"step {s}: loss {single.Losses[s]} vs {ranks[0].Losses[s]}");
            Assert.True(Math.Abs(single.Norms[s] - ranks[0].Norms[s]) <= 1e-4 * single.Norms[s], $"step {s}: norm {single.Norms[s]} vs {ranks[0].Norms[s]}");
        }
        Assert.All(ranks.Skip(1), r => Assert.Null(r.Checkpoint));
        var gathered = ranks[0].Checkpoint!;
        var reference = single.Checkpoint!;
        Assert.Equal(reference.UpdateCount, gathered.UpdateCount);
        Assert.Equal(reference.DataPosition, gathered.DataPosition);
        Assert.Equal(reference.RandomState, gathered.RandomState);
        double worst = LargestDifference(reference.Weights, gathered.Weights);
        Assert.True(worst <= 2e-4, $"largest weight difference {worst}");
        // the run moved: the weights left their initialization by far more than the tolerance
        Assert.True(LargestDifference(RunSingle(config, 0).Checkpoint!.Weights, gathered.Weights) > 2e-2);
        Assert.True(LargestDifference(reference.FirstMoment, gathered.FirstMoment) <= 2e-5);
    }

    /// <summary>
    /// Where the additions happen in the single process's order the result is its bits: the layout 1×1×1 is
    /// <see cref="Trainer"/> itself, and Llama under pipeline stages alone with M micro-batches is a single process
    /// with batch B/M accumulating M (the same windows in the same order, the norm summed through the stages in index
    /// order). Losses, norms and gathered weights and moments equal.
    /// </summary>
    [Theory]
    [InlineData(1, 1, PipelineSchedule.OneFOneB)]
    [InlineData(2, 2, PipelineSchedule.GPipe)]
    [InlineData(4, 4, PipelineSchedule.OneFOneB)]
    public void WithoutReorderedSumsItIsTheSingleProcessBitForBit(int pp, int micro, PipelineSchedule schedule)
    {
        var config = Config(ModelFamily.Llama);
        Run single;
        using (var data = Data())
        {
            var t = Trainer.Start(config, Options() with { Batch = Batch / micro, GradAccum = micro }, data, null);
            var losses = new double[Steps];
            var norms = new double[Steps];
            for (int s = 0; s < Steps; s++)
                (losses[s], norms[s]) = t.TrainStep() is var r ? (r.Loss, r.GradientNorm) : default;
            single = new Run(losses, norms, t.Snapshot());
        }
        var ranks = RunParallel(config, Layout(1, 1, pp, micro, schedule), Steps);
        Assert.Equal(single.Losses, ranks[0].Losses);
        Assert.Equal(single.Norms, ranks[0].Norms);
        Assert.Equal(single.Checkpoint!.Weights, ranks[0].Checkpoint!.Weights);
        Assert.Equal(single.Checkpoint.SecondMoment, ranks[0].Checkpoint!.SecondMoment);
        Assert.Equal(single.Checkpoint.DataPosition, ranks[0].Checkpoint!.DataPosition);
    }

    /// <summary>Gradient accumulation runs the pipeline's schedule once per accumulated global batch: the steps of a single process accumulating as many (tolerances as above).</summary>
    [Fact]
    public void GradientAccumulationMatchesSingleProcess()
    {
        var config = Config(ModelFamily.Gpt2);
        var single = RunSingle(config, Steps, gradAccum: 2);
        var ranks = RunParallel(config, Layout(2, 1, 2, 2, PipelineSchedule.OneFOneB, zero: 1), Steps, gradAccum: 2);
        Assert.True(single.Losses[^1] < single.Losses[0] - 0.05, "the reference run does not learn");
        for (int s = 0; s < Steps; s++)
            Assert.True(Math.Abs(single.Losses[s] - ranks[0].Losses[s]) <= 5e-6 * single.Losses[s], $"step {s}: loss {single.Losses[s]} vs {ranks[0].Losses[s]}");
        Assert.Equal(single.Checkpoint!.DataPosition, ranks[0].Checkpoint!.DataPosition);
        Assert.True(LargestDifference(single.Checkpoint.Weights, ranks[0].Checkpoint!.Weights) <= 2e-4);
    }

    /// <summary>
    /// Under MPI a send may complete only once its receive is posted, and its buffer must stay untouched until then:
    /// the schedule, the tied-gradient exchange, evaluation's forward chain and Gather's sends to rank 0 must all finish
    /// under such sends (within a minute: a deadlock would hang) with the bits of buffered sends.
    /// </summary>
    [Fact]
    public async Task KeepsMpiSendRules()
    {
        var config = Config(ModelFamily.Gpt2);
        var layout = Layout(2, 2, 2, 2, PipelineSchedule.OneFOneB, zero: 1);
        var plain = RunParallel(config, layout, 3);
        var strict = await Task.Run(() => RunParallel(config, layout, 3, synchronousSends: true)).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(plain[0].Losses, strict[0].Losses);
        Assert.Equal(plain[0].Checkpoint!.Weights, strict[0].Checkpoint!.Weights);
        var evaluations = await Task.Run(() => LocalCommunicator.Run(layout.Ranks, local =>
        {
            using var data = Data();
            using var eval = Data();
            using var t = ParallelTrainer.Start(new SynchronousSendCommunicator(local), layout, config, Options(), data, null);
            return t.Evaluate(eval, 2);
        })).WaitAsync(TimeSpan.FromMinutes(1));
        Assert.All(evaluations, e => Assert.Equal(evaluations[0], e));
    }

    /// <summary>Gather of a fresh run is the single-process initialization bit for bit: each rank drew exactly its piece, and Gather put every piece back.</summary>
    [Theory]
    [InlineData(ModelFamily.Llama, 2, 2, 2, 1)]
    [InlineData(ModelFamily.Gpt2, 2, 2, 2, 1)]
    [InlineData(ModelFamily.Gpt2, 1, 2, 4, 0)]
    public void GatherOfAFreshRunIsTheSingleProcessInitialization(ModelFamily family, int dp, int tp, int pp, int zero)
    {
        var config = Config(family);
        var single = RunSingle(config, 0).Checkpoint!;
        var gathered = RunParallel(config, Layout(dp, tp, pp, 1, PipelineSchedule.OneFOneB, zero), 0)[0].Checkpoint!;
        Assert.Equal(single.Weights, gathered.Weights);
        Assert.Equal(single.FirstMoment, gathered.FirstMoment);
        Assert.Equal(single.DataPosition, gathered.DataPosition);
    }

    /// <summary>
    /// A checkpoint gathered under tp 2 × pp 2 resumes under dp 2 × pp 2 (ZeRO-1) and in a single process: an
    /// immediate Gather gives back the checkpoint bit for bit (each rank took exactly its piece, moments and counters
    /// included), the continued losses agree with each other and with the uninterrupted single-process run (the
    /// tolerances of <see cref="MatchesSingleProcessTraining"/>), and Save writes what Gather returns.
    /// </summary>
    [Theory]
    [InlineData(ModelFamily.Llama)]
    [InlineData(ModelFamily.Gpt2)]
    public void CheckpointResumesUnderAnotherLayout(ModelFamily family)
    {
        var config = Config(family);
        var uninterrupted = RunSingle(config, Steps);
        var first = RunParallel(config, Layout(1, 2, 2, 2, PipelineSchedule.OneFOneB), Steps / 2)[0].Checkpoint!;
        Assert.Equal(Steps / 2, first.Step);

        var same = RunParallel(config, Layout(2, 1, 2, 2, PipelineSchedule.GPipe, zero: 1), 0, first)[0].Checkpoint!;
        Assert.Equal(first.Weights, same.Weights);
        Assert.Equal(first.FirstMoment, same.FirstMoment);
        Assert.Equal(first.SecondMoment, same.SecondMoment);
        Assert.Equal(first.UpdateCount, same.UpdateCount);
        Assert.Equal(first.DataPosition, same.DataPosition);
        Assert.Equal(first.Step, same.Step);

        var parallel = RunParallel(config, Layout(2, 1, 2, 2, PipelineSchedule.GPipe, zero: 1), Steps / 2, first);
        var single = RunSingle(config, Steps / 2, first);
        for (int s = 0; s < Steps / 2; s++)
        {
            double expected = uninterrupted.Losses[Steps / 2 + s];
            Assert.True(Math.Abs(single.Losses[s] - expected) <= 5e-6 * expected, $"single step {s}: {single.Losses[s]} vs {expected}");
            Assert.True(Math.Abs(parallel[0].Losses[s] - expected) <= 5e-6 * expected, $"parallel step {s}: {parallel[0].Losses[s]} vs {expected}");
        }
        Assert.True(LargestDifference(single.Checkpoint!.Weights, parallel[0].Checkpoint!.Weights) <= 2e-4);

        string path = Path.Combine(_dir, "3d.ckpt");
        LocalCommunicator.Run(4, world =>
        {
            using var data = Data();
            using var t = ParallelTrainer.Resume(world, Layout(1, 2, 2, 1, PipelineSchedule.OneFOneB), first, config, Options(), data, null);
            t.Save(path);
        });
        var written = TrainingCheckpoint.Read(path);
        Assert.Equal(first.Weights, written.Weights);
        Assert.Equal(first.SecondMoment, written.SecondMoment);
        Assert.Equal(first.Step, written.Step);
    }

    /// <summary>Evaluation through the pipeline: the same mean loss as one process (the mean of equal micro-batch means), on every rank.</summary>
    [Fact]
    public void EvaluateMatchesSingleProcess()
    {
        var config = Config(ModelFamily.Gpt2);
        double expected;
        using (var data = Data())
            expected = Trainer.Start(config, Options(), data, null).Evaluate(data, 3);
        var losses = LocalCommunicator.Run(8, world =>
        {
            using var data = Data();
            using var eval = Data();
            using var t = ParallelTrainer.Start(world, Layout(2, 2, 2, 2, PipelineSchedule.OneFOneB), config, Options(), data, null);
            return t.Evaluate(eval, 3);
        });
        Assert.All(losses, l => Assert.Equal(losses[0], l));
        Assert.Equal(expected, losses[0], 1e-6 * expected);
    }

    /// <summary>What the step measured: the time split and the stage's memory (its shard only).</summary>
    [Fact]
    public void ReportsTimesAndMemory()
    {
        var config = Config(ModelFamily.Llama);
        var results = LocalCommunicator.Run(4, world =>
        {
            using var data = Data();
            using var t = ParallelTrainer.Start(world, Layout(2, 1, 2, 2, PipelineSchedule.OneFOneB, zero: 1), config, Options(), data, null);
            t.TrainStep();
            return (t.LastStepTimes, t.MemoryHeld(), t.Stage.Parameters.Count, t.Partition!.ShardLength);
        });
        foreach (var (times, memory, count, shard) in results)
        {
            Assert.True(times.Total > TimeSpan.Zero);
            Assert.InRange(times.Communication + times.PipelineIdle, TimeSpan.Zero, times.Total);
            Assert.Equal(ModelStateMemory.Expected(ZeroStage.OptimizerStates, count, shard), memory);
        }
    }

    [Theory]
    [InlineData(2, 1, 2, 2)]
    [InlineData(2, 2, 1, 3)]
    [InlineData(1, 2, 2, 2)]
    public void Zero2And3WithTensorOrPipelineParallelismIsAClearError(int dp, int tp, int pp, int zero)
    {
        var config = Config(ModelFamily.Llama);
        var layout = Layout(dp, tp, pp, 1, PipelineSchedule.OneFOneB, zero);
        var errors = LocalCommunicator.Run(layout.Ranks, world =>
        {
            using var data = Data();
            return Record.Exception(() => ParallelTrainer.Start(world, layout, config, Options(), data, null));
        });
        foreach (var e in errors)
        {
            var error = Assert.IsType<TrainingConfigException>(e);
            Assert.Contains($"ZeRO stage {zero} is not supported with tensor or pipeline parallelism", error.Message);
        }
    }

    [Fact]
    public void ABatchThatDoesNotSplitOverTheReplicasIsAClearError()
    {
        var e = Assert.Throws<TrainingConfigException>(() =>
            ParallelTrainer.Check(Layout(3, 1, 1, 1, PipelineSchedule.GPipe), Config(ModelFamily.Llama), Options(), 3));
        Assert.Contains("does not split over 3 data-parallel replicas", e.Message);
    }
}
