using Xunit.Abstractions;
using Kiln.Distributed;
using Kiln.Training;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;
using Kiln.Training.Parallel;

using Kiln.Tests.TestSupport;

namespace Kiln.Tests.Training;

/// <summary>
/// What `kiln train` drives: <see cref="DistributedTrainers"/> with the global batch semantics of
/// <see cref="IDistributedTrainer"/>, checkpoints gathered to the single-process layout and resumed under other
/// layouts, and the communication time of a step. Ranks are <see cref="LocalCommunicator"/> threads.
/// </summary>
public sealed class DistributedTrainersTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-dist-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // as DataParallelTrainingTests' Llama config (its GPT-2 one covers shards with padding)
    private static readonly TrainingConfig Config = new() { Family = ModelFamily.Llama, Layers = 2, Dim = 16, Heads = 4, KvHeads = 2, Vocab = 13, Context = 8 };

    private static TrainerOptions Options(int steps = 10) => new()
    {
        Batch = 4, // global: each of D replicas takes 4 / D
        SequenceLength = 8,
        Steps = steps,
        WarmupSteps = 2,
        LearningRate = 1e-2f,
        Clip = 0.5f,
        Seed = 7,
    };

    private TokenStream Data() => NoisyCycleTokens.Open(_dir, 800, 3);

    private static ParallelLayout Dp(int ranks, int zero) => new() { Dp = ranks, Zero = zero };

    private sealed record Run(double[] Losses, TrainingCheckpoint? Gathered, ParallelStepTimes Times, ModelStateMemory Held);

    /// <summary>Runs <paramref name="steps"/> steps under a layout (from a checkpoint when given); rank 0's view.</summary>
    private Run Train(ParallelLayout layout, int steps, TrainingCheckpoint? from = null, int totalSteps = 10)
    {
        using var data = Data();
        return LocalCommunicator.Run(layout.Ranks, world =>
        {
            using var t = from is null
                ? DistributedTrainers.Start(world, layout, Config, Options(totalSteps), data, null)
                : DistributedTrainers.Resume(world, layout, from, Options(totalSteps), data, null);
            var losses = new double[steps];
            for (int i = 0; i < steps; i++)
                losses[i] = t.TrainStep().Loss;
            Assert.Equal(Options().Batch * Options().SequenceLength, t.TokensPerStep);
            var gathered = t.Gather();
            Assert.Equal(world.Rank == 0, gathered is not null); // the whole state exists on rank 0 alone
            return new Run(losses, gathered, t.LastStepTimes, t.MemoryHeld());
        })[0];
    }

    [Fact]
    public void TheSingleLayoutIsThePlainTrainer()
    {
        using var data = Data();
        using var world = LocalCommunicator.CreateWorld(1)[0];
        using var t = DistributedTrainers.Start(world, ParallelLayout.Single, Config, Options(), data, null);
        Assert.IsType<SingleProcessTrainer>(t);
        var plain = Trainer.Start(Config, Options(), data, null);
        for (int i = 0; i < 3; i++)
            Assert.Equal(plain.TrainStep(), t.TrainStep());
        Assert.Equal(plain.Model.Parameters.Values, t.Gather()!.Weights);
    }

    /// <summary>
    /// With the global batch, every ZeRO stage at 2 and 4 replicas takes the single process's steps: losses within 1e-5
    /// relative and weights within 1e-4 (the summation-order bounds DataParallelTrainingTests justifies), and the
    /// gathered moments too. Only rank 0 gets the gathered checkpoint, which carries the global options.
    /// </summary>
    [Theory]
    [InlineData(2, 0)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    [InlineData(2, 3)]
    [InlineData(4, 0)]
    [InlineData(4, 3)]
    public void DataParallelWithTheGlobalBatchMatchesOneProcess(int ranks, int zero)
    {
        var single = Train(ParallelLayout.Single, 10);
        var parallel = Train(Dp(ranks, zero), 10);
        for (int i = 0; i < 10; i++)
            Assert.Equal(single.Losses[i], parallel.Losses[i], 1e-5 * single.Losses[i]);
        var (a, b) = (single.Gathered!, parallel.Gathered!);
        Assert.Equal(Options(), b.Options);
        Assert.Equal(a.Step, b.Step);
        Assert.Equal(a.UpdateCount, b.UpdateCount);
        Assert.Equal(a.DataPosition, b.DataPosition);
        Assert.Equal(a.RandomState, b.RandomState);
        double weights = MaxDifference(a.Weights, b.Weights), first = MaxDifference(a.FirstMoment, b.FirstMoment);
        output.WriteLine($"dp {ranks} zero {zero}: weights ±{weights:E2}, first moment ±{first:E2}");
        Assert.InRange(weights, 0, 1e-4);
        Assert.InRange(first, 0, 1e-4);
        Assert.InRange(MaxDifference(a.SecondMoment, b.SecondMoment), 0, 1e-6);
        Assert.True(MaxDifference(a.Weights, Train(ParallelLayout.Single, 1).Gathered!.Weights) > 1e-2); // the weights moved
    }

    /// <summary>
    /// A checkpoint written under dp 2 ZeRO-3 resumes under dp 4 (plain and ZeRO-3), ZeRO-1 and in one process with its
    /// exact weights and moments (gathered back before any step, bit for bit), and the continued runs agree with the
    /// single process continuing within the summation-order tolerance.
    /// </summary>
    [Fact]
    public void ACheckpointResumesUnderAnyLayoutWithItsExactState()
    {
        var checkpoint = Train(Dp(2, 3), 5).Gathered!;
        string path = Path.Combine(_dir, "dp2-zero3.bin");
        checkpoint.Write(path);
        checkpoint = TrainingCheckpoint.Read(path);
        Assert.Equal(5, checkpoint.Step);
        var continued = new Dictionary<string, Run>();
        foreach (var (name, layout) in new (string, ParallelLayout)[] { ("single", ParallelLayout.Single), ("dp4", Dp(4, 0)), ("dp4 zero3", Dp(4, 3)), ("dp2 zero1", Dp(2, 1)) })
        {
            var restored = Train(layout, 0, checkpoint).Gathered!;
            Assert.Equal(checkpoint.Weights, restored.Weights);
            Assert.Equal(checkpoint.FirstMoment, restored.FirstMoment);
            Assert.Equal(checkpoint.SecondMoment, restored.SecondMoment);
            Assert.Equal(checkpoint.UpdateCount, restored.UpdateCount);
            Assert.Equal(checkpoint.DataPosition, restored.DataPosition);
            Assert.Equal(checkpoint.RandomState, restored.RandomState);
            Assert.Equal(5, restored.Step);
            continued[name] = Train(layout, 5, checkpoint);
        }
        var reference = continued["single"];
        foreach (var (name, run) in continued)
        {
            for (int i = 0; i < 5; i++)
                Assert.Equal(reference.Losses[i], run.Losses[i], 1e-5 * reference.Losses[i]);
            Assert.Equal(10, run.Gathered!.Step);
            Assert.InRange(MaxDifference(reference.Gathered!.Weights, run.Gathered.Weights), 0, 1e-4);
            output.WriteLine($"{name}: ±{MaxDifference(reference.Gathered.Weights, run.Gathered.Weights):E2}");
        }
    }

    [Fact]
    public void ACheckpointOfAnotherGlobalBatchOrModelIsRefused()
    {
        var checkpoint = Train(Dp(2, 1), 1).Gathered!;
        using var data = Data();
        string Refusal(TrainingCheckpoint c, TrainerOptions o) => LocalCommunicator.Run(2, world =>
            Assert.Throws<TrainingConfigException>(() => DistributedTrainers.Resume(world, Dp(2, 0), c, o, data, null)).Message)[0];
        Assert.Contains("trained with batch 4", Refusal(checkpoint, Options() with { Batch = 2 }));
        var other = new TrainingCheckpoint
        {
            Config = Config with { Layers = 1 }, Options = checkpoint.Options, Step = 1, UpdateCount = 1, RandomState = checkpoint.RandomState,
            DataPosition = checkpoint.DataPosition, Weights = checkpoint.Weights, FirstMoment = checkpoint.FirstMoment, SecondMoment = checkpoint.SecondMoment,
        };
        Assert.Matches("the checkpoint holds [0-9]+ parameters, the model [0-9]+", Refusal(other, Options()));
    }

    /// <summary>Every rank gets the same message for a layout that does not fit, before any communication.</summary>
    [Theory]
    [InlineData(2, 1, 1, 0, 4, "dp 2 × tp 1 × pp 1 = 2 ranks, but the job has 4")]
    [InlineData(1, 8, 1, 0, 8, "needs heads divisible by 8; the model has 4")]
    [InlineData(1, 1, 4, 0, 4, "needs layers divisible by 4; the model has 2")]
    [InlineData(3, 1, 1, 0, 3, "the batch of 4 sequences does not split over 3 data-parallel replicas")]
    [InlineData(2, 1, 1, 4, 2, "--zero must be 0, 1, 2 or 3 (got 4)")]
    [InlineData(1, 2, 1, 2, 2, "ZeRO stage 2 is not supported with tensor or pipeline parallelism (tp 2, pp 1)")]
    [InlineData(2, 1, 1, 3, 2, "without a pipeline use --grad-accum 2", 2)]
    public void ALayoutThatDoesNotFitIsOneMessageOnEveryRank(int dp, int tp, int pp, int zero, int worldSize, string expected, int microBatches = 1)
    {
        using var data = Data();
        var layout = new ParallelLayout { Dp = dp, Tp = tp, Pp = pp, Zero = zero, MicroBatches = microBatches };
        var messages = new string[worldSize];
        LocalCommunicator.Run(worldSize, world =>
            messages[world.Rank] = Assert.Throws<TrainingConfigException>(() => DistributedTrainers.Start(world, layout, Config, Options(), data, null)).Message);
        Assert.Contains(expected, messages[0]);
        Assert.All(messages, m => Assert.Equal(messages[0], m));
    }

    /// <summary>
    /// A data-parallel step reports the time its rank waited in communication: some (there are collectives in every
    /// step), never more than the step. The memory is the ZeRO stage's.
    /// </summary>
    [Fact]
    public void AStepReportsItsCommunicationTimeAndMemory()
    {
        var run = Train(Dp(2, 3), 2);
        Assert.True(run.Times.Communication > TimeSpan.Zero, $"{run.Times}");
        Assert.True(run.Times.Communication <= run.Times.Total, $"{run.Times}");
        Assert.InRange(run.Times.CommunicationFraction, 0, 1);
        var single = Train(ParallelLayout.Single, 1);
        Assert.Equal(TimeSpan.Zero, single.Times.Communication);
        Assert.True(single.Times.Total > TimeSpan.Zero);
        Assert.Equal(single.Held.Total, 16L * single.Gathered!.Weights.Length);
        Assert.True(run.Held.Total < single.Held.Total / 2 + 64, $"ZeRO-3 at 2 ranks holds {run.Held.Total} of {single.Held.Total}");
    }

    private static double MaxDifference(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}
