using Kiln.Distributed;
using Kiln.Training;
using Kiln.Training.Data;
using Kiln.Training.Models;
using Kiln.Training.Parallel;

using Kiln.Tests.TestSupport;

namespace Kiln.Tests.Training;

/// <summary>
/// Pipeline parallelism (ranks as threads) against single-process training with gradient accumulation over the same
/// micro-batches, and the schedules' timetables and activation memory against what GPipe and 1F1B promise.
/// </summary>
public sealed class PipelineParallelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-pp-").FullName;

    // written before any rank's thread opens it
    public PipelineParallelTests() => Data().Dispose();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const int Steps = 10;
    private const int Batch = 4;

    private static TrainingConfig Config(ModelFamily family) => new()
    {
        Family = family, Layers = 4, Dim = 16, Heads = 4, KvHeads = family == ModelFamily.Llama ? 2 : 0, Vocab = 13, Context = 8,
    };

    private static TrainerOptions Options(int batch, int gradAccum) => new()
    {
        Batch = batch,
        SequenceLength = 8,
        Steps = 20,
        GradAccum = gradAccum,
        WarmupSteps = 3,
        LearningRate = 1e-2f,
        Clip = 0.5f, // low enough that some steps clip: the norm summed through the stages is then exercised too
        Seed = 7,
    };

    private TokenStream Data() => NoisyCycleTokens.Open(_dir, 400, 5);

    private sealed record StageRun(double[] Losses, double[] Norms, Dictionary<string, float[]> Weights, PipelineStepStatistics Last, long HeldBytes);

    private StageRun[] RunPipeline(TrainingConfig config, int stages, int microBatches, PipelineSchedule schedule, int steps = Steps, int batch = Batch,
        Recomputation recompute = Recomputation.None, bool synchronousSends = false)
    {
        var layout = new ParallelLayout { Pp = stages, MicroBatches = microBatches, Schedule = schedule };
        return LocalCommunicator.Run(stages, local =>
        {
            var comm = synchronousSends ? new SynchronousSendCommunicator(local) : local;
            using var data = Data();
            var t = PipelineTrainer.Start(config, Options(batch, 1) with { Recompute = recompute }, layout, data, comm, null);
            var losses = new double[steps];
            var norms = new double[steps];
            for (int s = 0; s < steps; s++)
                (losses[s], norms[s]) = t.TrainStep() is var r ? (r.Loss, r.GradientNorm) : default;
            return new StageRun(losses, norms, ByName(t.Stage.Parameters), t.LastStatistics!, t.Stage.ActivationBytesHeld);
        });
    }

    private (double[] Losses, double[] Norms, Dictionary<string, float[]> Weights) RunSingle(TrainingConfig config, int microBatches, Recomputation recompute = Recomputation.None)
    {
        using var data = Data();
        var t = Trainer.Start(config, Options(Batch / microBatches, microBatches) with { Recompute = recompute }, data, null);
        var losses = new double[Steps];
        var norms = new double[Steps];
        for (int s = 0; s < Steps; s++)
            (losses[s], norms[s]) = t.TrainStep() is var r ? (r.Loss, r.GradientNorm) : default;
        return (losses, norms, ByName(t.Model.Parameters));
    }

    private static Dictionary<string, float[]> ByName(ParameterSet<float> p) =>
        p.Tensors.ToDictionary(t => t.Name, t => p.Value(t).ToArray());

    /// <summary>
    /// Llama (untied head): every stage adds the same micro-batch gradients in the same order, the norm is summed in
    /// the single-process order, AdamW is element-wise: losses, norms and final weights equal single-process
    /// gradient accumulation bit for bit.
    /// </summary>
    [Theory]
    [InlineData(2, 1, PipelineSchedule.GPipe)]
    [InlineData(2, 2, PipelineSchedule.GPipe)]
    [InlineData(2, 4, PipelineSchedule.GPipe)]
    [InlineData(4, 1, PipelineSchedule.GPipe)]
    [InlineData(4, 2, PipelineSchedule.GPipe)]
    [InlineData(4, 4, PipelineSchedule.GPipe)]
    [InlineData(2, 1, PipelineSchedule.OneFOneB)]
    [InlineData(2, 2, PipelineSchedule.OneFOneB)]
    [InlineData(2, 4, PipelineSchedule.OneFOneB)]
    [InlineData(4, 1, PipelineSchedule.OneFOneB)]
    [InlineData(4, 2, PipelineSchedule.OneFOneB)]
    [InlineData(4, 4, PipelineSchedule.OneFOneB)]
    public void LlamaMatchesGradientAccumulationBitForBit(int stages, int microBatches, PipelineSchedule schedule)
    {
        var config = Config(ModelFamily.Llama);
        var single = RunSingle(config, microBatches);
        var ranks = RunPipeline(config, stages, microBatches, schedule);
        Assert.True(single.Losses[^1] < single.Losses[0] - 0.05, "the reference run does not learn");
        Assert.Contains(single.Norms, n => n > Options(Batch, 1).Clip);
        foreach (var r in ranks)
        {
            Assert.Equal(single.Losses, r.Losses);
            Assert.Equal(single.Norms, r.Norms);
        }
        var merged = ranks.SelectMany(r => r.Weights).ToList();
        Assert.Equal(single.Weights.Count, merged.Count); // each tensor on exactly one stage
        foreach (var (name, w) in merged)
            Assert.True(single.Weights[name].AsSpan().SequenceEqual(w), $"{name} differs");
    }

    /// <summary>
    /// Under MPI, a large non-blocking send completes only once the receiver has posted its receive, and its buffer must
    /// stay untouched until then; LocalCommunicator buffers every send and would hide a schedule that deadlocks or
    /// reuses a buffer early. Both schedules must finish (within a minute: a deadlock would hang) with the same bits.
    /// </summary>
    [Theory]
    [InlineData(2, 4, PipelineSchedule.GPipe)]
    [InlineData(2, 4, PipelineSchedule.OneFOneB)]
    [InlineData(4, 8, PipelineSchedule.GPipe)]
    [InlineData(4, 8, PipelineSchedule.OneFOneB)]
    [InlineData(4, 2, PipelineSchedule.OneFOneB)]
    public async Task SchedulesKeepMpiSendRules(int stages, int microBatches, PipelineSchedule schedule)
    {
        var config = Config(ModelFamily.Gpt2); // tied: the wte exchange is exercised too
        var plain = RunPipeline(config, stages, microBatches, schedule, steps: 3, batch: 8);
        var strict = await Task.Run(() => RunPipeline(config, stages, microBatches, schedule, steps: 3, batch: 8, synchronousSends: true))
            .WaitAsync(TimeSpan.FromMinutes(1)); // a TimeoutException here means the schedule deadlocks under synchronous sends
        for (int s = 0; s < stages; s++)
        {
            Assert.Equal(plain[s].Losses, strict[s].Losses);
            foreach (var (name, w) in plain[s].Weights)
                Assert.Equal(w, strict[s].Weights[name]);
        }
    }

    /// <summary>
    /// Recomputation reruns a stage's blocks in its backward pass (the block whose output is still being sent to the next
    /// stage is never rerun): the pipeline keeps the bits of single-process training with the same recomputation.
    /// (Not those without it: attention's probabilities rebuilt as exp(s − lse) differ in the last bits from the stored
    /// exp(s − max)/sum.)
    /// </summary>
    [Theory]
    [InlineData(PipelineSchedule.GPipe)]
    [InlineData(PipelineSchedule.OneFOneB)]
    public void RecomputationKeepsTheBits(PipelineSchedule schedule)
    {
        var config = Config(ModelFamily.Llama);
        const Recomputation both = Recomputation.Block | Recomputation.Attention;
        var single = RunSingle(config, 4, both);
        var ranks = RunPipeline(config, 2, 4, schedule, recompute: both);
        Assert.Equal(single.Losses, ranks[0].Losses);
        foreach (var (name, w) in ranks.SelectMany(r => r.Weights))
            Assert.True(single.Weights[name].AsSpan().SequenceEqual(w), $"{name} differs");
    }

    /// <summary>
    /// GPT-2 ties wte to the head. The first stage sums the embedding's wte gradient over the micro-batches and the last
    /// stage the head's; the two sums are then added, where a single process adds head and embedding parts alternately
    /// (and onto each other). Only the rounding of wte's gradient differs, by an ulp or so of its terms; AdamW divides
    /// by √v, so after 10 steps weights differ by up to 2.3e-5 (measured over these cases), a few thousandths of one
    /// step's lr (1e-2). Tolerances: loss 1e-5 relative, weights 2e-4 absolute (9× the worst seen). The two copies of
    /// wte must stay bit-identical to each other.
    /// </summary>
    [Theory]
    [InlineData(2, 1, PipelineSchedule.GPipe)]
    [InlineData(2, 2, PipelineSchedule.GPipe)]
    [InlineData(2, 4, PipelineSchedule.GPipe)]
    [InlineData(4, 1, PipelineSchedule.GPipe)]
    [InlineData(4, 2, PipelineSchedule.GPipe)]
    [InlineData(4, 4, PipelineSchedule.GPipe)]
    [InlineData(2, 1, PipelineSchedule.OneFOneB)]
    [InlineData(2, 2, PipelineSchedule.OneFOneB)]
    [InlineData(2, 4, PipelineSchedule.OneFOneB)]
    [InlineData(4, 1, PipelineSchedule.OneFOneB)]
    [InlineData(4, 2, PipelineSchedule.OneFOneB)]
    [InlineData(4, 4, PipelineSchedule.OneFOneB)]
    public void Gpt2MatchesGradientAccumulationWithinRounding(int stages, int microBatches, PipelineSchedule schedule)
    {
        var config = Config(ModelFamily.Gpt2);
        var single = RunSingle(config, microBatches);
        var ranks = RunPipeline(config, stages, microBatches, schedule);
        Assert.True(single.Losses[^1] < single.Losses[0] - 0.05, "the reference run does not learn");
        Assert.Equal(single.Losses[0], ranks[0].Losses[0]); // the first step's forward is before any update: exact
        foreach (var r in ranks)
            for (int s = 0; s < Steps; s++)
                Assert.True(Math.Abs(single.Losses[s] - r.Losses[s]) <= 1e-5 * single.Losses[s], $"step {s}: {single.Losses[s]} vs {r.Losses[s]}");
        Assert.Equal(ranks[0].Weights["wte"], ranks[^1].Weights["wte"]);
        double worst = 0;
        foreach (var (name, w) in ranks.SelectMany(r => r.Weights))
            for (int i = 0; i < w.Length; i++)
                worst = Math.Max(worst, Math.Abs(single.Weights[name][i] - w[i]));
        Assert.True(worst <= 2e-4, $"largest weight difference {worst}");
        Assert.Equal(single.Weights.Count + 1, ranks.Sum(r => r.Weights.Count)); // wte on first and last stage
    }

    /// <summary>
    /// Activation memory measured over a step: GPipe holds all M micro-batches on every stage, 1F1B at most P − stage;
    /// what a stage has allocated is exactly its peak (instances are only made when none is free).
    /// </summary>
    [Theory]
    [InlineData(ModelFamily.Llama, 2, 4)]
    [InlineData(ModelFamily.Gpt2, 4, 8)]
    [InlineData(ModelFamily.Llama, 4, 2)]
    public void OneFOneBHoldsFewerActivationsThanGPipe(ModelFamily family, int stages, int microBatches)
    {
        var config = Config(family);
        var gpipe = RunPipeline(config, stages, microBatches, PipelineSchedule.GPipe, steps: 2, batch: microBatches);
        var oneF = RunPipeline(config, stages, microBatches, PipelineSchedule.OneFOneB, steps: 2, batch: microBatches);
        for (int s = 0; s < stages; s++)
        {
            Assert.Equal(microBatches, gpipe[s].Last.PeakInFlight);
            Assert.Equal(Math.Min(stages - s, microBatches), oneF[s].Last.PeakInFlight);
            Assert.Equal(gpipe[s].Last.PeakActivationBytes, gpipe[s].HeldBytes);
            Assert.Equal(oneF[s].Last.PeakActivationBytes, oneF[s].HeldBytes);
            Assert.True(oneF[s].Last.PeakActivationBytes <= gpipe[s].Last.PeakActivationBytes);
        }
        if (microBatches > stages)
            Assert.True(oneF[0].Last.PeakActivationBytes < gpipe[0].Last.PeakActivationBytes);
        Assert.Equal(oneF[^1].Last.PeakActivationBytes * microBatches, gpipe[^1].Last.PeakActivationBytes);
    }

    [Theory]
    [InlineData(PipelineSchedule.GPipe)]
    [InlineData(PipelineSchedule.OneFOneB)]
    public void TimetablesRunEachPassOnceInMicroBatchOrder(PipelineSchedule schedule)
    {
        foreach (int stages in new[] { 1, 2, 3, 4 })
            foreach (int m in new[] { 1, 2, 3, 4, 8 })
                for (int s = 0; s < stages; s++)
                {
                    var ops = PipelineTimetable.For(schedule, s, stages, m);
                    Assert.Equal(Enumerable.Range(0, m), ops.Where(o => !o.IsBackward).Select(o => o.MicroBatch));
                    Assert.Equal(Enumerable.Range(0, m), ops.Where(o => o.IsBackward).Select(o => o.MicroBatch));
                    for (int i = 0; i < m; i++)
                        Assert.True(Array.IndexOf(ops, new PipelineOperation(false, i)) < Array.IndexOf(ops, new PipelineOperation(true, i)));
                    int expected = schedule == PipelineSchedule.GPipe ? m : Math.Min(stages - s, m);
                    Assert.Equal(expected, PipelineTimetable.MostInFlight(ops));
                }
        // the textbook 1F1B for stage 0 of 4 with 6 micro-batches
        Assert.Equal("F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5",
            string.Join(' ', PipelineTimetable.For(PipelineSchedule.OneFOneB, 0, 4, 6)));
        Assert.Equal(0.2, PipelineTimetable.TheoreticalBubble(2, 4), 12);
        Assert.Equal(3.0 / 10, PipelineTimetable.TheoreticalBubble(4, 7), 12);
    }

    [Fact]
    public void StagesHoldOnlyTheirOwnParameters()
    {
        var config = Config(ModelFamily.Llama);
        var whole = TrainableModel<float>.Create(config, null);
        long sum = 0;
        for (int s = 0; s < 4; s++)
        {
            var part = ModelPart.Stage(config, s, 4);
            var stage = TrainableModel<float>.Create(config, null, Recomputation.None, null, part, null);
            sum += stage.Parameters.Count;
            Assert.Equal(s == 0, stage.Parameters.Tensors.Any(t => t.Name == "token_embd.weight"));
            Assert.Equal(s == 3, stage.Parameters.Tensors.Any(t => t.Name == "output.weight"));
            Assert.All(stage.Parameters.Tensors.Where(t => t.Name.StartsWith("blk.", StringComparison.Ordinal)),
                t => Assert.StartsWith($"blk.{s}.", t.Name));
        }
        Assert.Equal(whole.Parameters.Count, sum);
        Assert.Throws<TrainingConfigException>(() => TrainableModel<float>.Create(config, null, Recomputation.None, null, new ModelPart(4, 0, false, true), null));
        Assert.Throws<TrainingConfigException>(() => TrainableModel<float>.Create(config, null, Recomputation.None, null, new ModelPart(2, 3, false, true), null));
        var gpt = Config(ModelFamily.Gpt2);
        var middle = TrainableModel<float>.Create(gpt, null, Recomputation.None, null, ModelPart.Stage(gpt, 1, 4), null);
        Assert.Null(middle.TiedOutputWeight);
        Assert.Equal("wte", TrainableModel<float>.Create(gpt, null, Recomputation.None, null, ModelPart.Stage(gpt, 3, 4), null).TiedOutputWeight?.Name);
    }

    [Fact]
    public void StagesThatDoNotDivideTheLayersAreAClearError()
    {
        var config = Config(ModelFamily.Llama); // 4 layers
        var world = LocalCommunicator.CreateWorld(3);
        using var data = Data();
        var e = Assert.Throws<TrainingConfigException>(() =>
            PipelineTrainer.Start(config, Options(Batch, 1), new ParallelLayout { Pp = 3 }, data, world[0], null));
        Assert.Contains("layers divisible by 3", e.Message);
        Assert.Contains("4", e.Message);
        Assert.Throws<TrainingConfigException>(() => ModelPart.Stage(config, 0, 3));
        var m = Assert.Throws<TrainingConfigException>(() =>
            PipelineTrainer.Start(config, Options(Batch, 1), new ParallelLayout { Pp = 3, MicroBatches = 3 }, data, world[0], null));
        Assert.Contains("layers divisible by 3", m.Message);
    }
}
