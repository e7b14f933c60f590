using Kiln.Threading;
using Kiln.Training;
using Kiln.Training.Checkpoints;
using Kiln.Training.Data;

namespace Kiln.Tests.Training;

public sealed class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly TrainingConfig Config = new() { Family = ModelFamily.Llama, Layers = 2, Dim = 16, Heads = 4, KvHeads = 2, Vocab = 13, Context = 8 };

    private static readonly TrainerOptions Options = new()
    {
        Batch = 2,
        SequenceLength = 8,
        Steps = 20,
        GradAccum = 2,
        WarmupSteps = 3,
        LearningRate = 3e-3f,
        Seed = 99,
    };

    private TokenStream Data()
    {
        string path = Path.Combine(_dir, "train.bin");
        if (!File.Exists(path))
        {
            var rng = new Random(4);
            TokenStreamFile.Write(path, Enumerable.Range(0, 300).Select(_ => rng.Next(13)).ToArray(), 13);
        }
        return TokenStream.Open(path);
    }

    /// <summary>20 steps straight equal 10 steps, save, load into fresh objects, 10 steps: weights and moments compared bit for bit.</summary>
    [Fact]
    public void ResumeContinuesBitIdentically()
    {
        using var data = Data();
        using var pool = new WorkerPool(2);
        var straight = Trainer.Start(Config, Options, data, pool);
        for (int i = 0; i < 20; i++)
            straight.TrainStep();

        var first = Trainer.Start(Config, Options, data, pool);
        for (int i = 0; i < 10; i++)
            first.TrainStep();
        string path = Path.Combine(_dir, "ckpt.bin");
        first.Save(path);
        var resumed = Trainer.Resume(TrainingCheckpoint.Read(path), Config, Options, data, null); // other thread count too
        Assert.Equal(10, resumed.Step);
        for (int i = 0; i < 10; i++)
            resumed.TrainStep();

        Assert.Equal(straight.Model.Parameters.Values, resumed.Model.Parameters.Values);
        Assert.Equal(straight.Optimizer.FirstMoment, resumed.Optimizer.FirstMoment);
        Assert.Equal(straight.Optimizer.SecondMoment, resumed.Optimizer.SecondMoment);
        Assert.Equal(straight.Loader.Position, resumed.Loader.Position);
        // and training did move the weights: the comparison is not of two untouched initializations
        Assert.NotEqual(first.Model.Parameters.Values, resumed.Model.Parameters.Values);
    }

    [Fact]
    public void DamagedOrTruncatedCheckpointsAreDetected()
    {
        using var data = Data();
        var t = Trainer.Start(Config, Options, data, null);
        t.TrainStep();
        string path = Path.Combine(_dir, "ckpt.bin");
        t.Save(path);
        byte[] good = File.ReadAllBytes(path);

        byte[] flipped = (byte[])good.Clone();
        flipped[good.Length / 2] ^= 0x10;
        File.WriteAllBytes(path, flipped);
        Assert.Contains("checksum mismatch", Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Read(path)).Message);

        File.WriteAllBytes(path, good.AsSpan(0, good.Length - 100).ToArray());
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Read(path)).Message);

        File.WriteAllBytes(path, good);
        Assert.Equal(1, TrainingCheckpoint.Read(path).Step);
    }

    /// <summary>
    /// What a kill during a write leaves behind: a partial temporary file next to the previous checkpoint. The
    /// previous one still loads, and the next save replaces both.
    /// </summary>
    [Fact]
    public void InterruptedWriteLeavesThePreviousCheckpointIntact()
    {
        using var data = Data();
        var t = Trainer.Start(Config, Options, data, null);
        t.TrainStep();
        string path = Path.Combine(_dir, "ckpt.bin");
        t.Save(path);
        byte[] before = File.ReadAllBytes(path);
        File.WriteAllBytes(path + ".tmp", before.AsSpan(0, before.Length / 3).ToArray());
        Assert.Equal(1, TrainingCheckpoint.Read(path).Step);
        t.TrainStep();
        t.Save(path);
        Assert.Equal(2, TrainingCheckpoint.Read(path).Step);
        Assert.False(File.Exists(path + ".tmp"));
    }

    [Fact]
    public void ACheckpointOfAnotherShapeIsRefused()
    {
        using var data = Data();
        var t = Trainer.Start(Config, Options, data, null);
        string path = Path.Combine(_dir, "ckpt.bin");
        t.Save(path);
        var other = Config with { Dim = 32 };
        var e = Assert.Throws<TrainingConfigException>(() => Trainer.Resume(TrainingCheckpoint.Read(path), other, Options, data, null));
        Assert.Contains("another model configuration", e.Message);
        var e2 = Assert.Throws<TrainingConfigException>(() => Trainer.Resume(TrainingCheckpoint.Read(path), Config, Options with { Batch = 3 }, data, null));
        Assert.Contains("resume with the same", e2.Message);
    }

    [Fact]
    public void NonFiniteLossStopsBeforeTouchingTheWeights()
    {
        using var data = Data();
        var t = Trainer.Start(Config, Options, data, null);
        t.TrainStep();
        Array.Fill(t.Model.Parameters.Values, float.NaN, 0, 13 * 16); // every token embedding
        float[] before = (float[])t.Model.Parameters.Values.Clone();
        var e = Assert.Throws<TrainingDivergedException>(() => t.TrainStep());
        Assert.Contains("loss became NaN at step 2", e.Message);
        Assert.Equal(before, t.Model.Parameters.Values);
        Assert.Equal(1, t.Step);
    }

    [Fact]
    public void DataFromALargerVocabularyIsRefused()
    {
        string path = Path.Combine(_dir, "big.bin");
        TokenStreamFile.Write(path, Enumerable.Range(0, 100).ToArray(), 100);
        using var data = TokenStream.Open(path);
        var e = Assert.Throws<TrainingConfigException>(() => Trainer.Start(Config, Options, data, null));
        Assert.Contains("larger than the model's vocab of 13", e.Message);
    }

    /// <summary>After the first step sized the buffers, a training step allocates nothing (so memory cannot grow over steps).</summary>
    [Theory]
    [InlineData(ModelFamily.Llama, Recomputation.None)]
    [InlineData(ModelFamily.Gpt2, Recomputation.None)]
    [InlineData(ModelFamily.Llama, Recomputation.Block)]
    [InlineData(ModelFamily.Gpt2, Recomputation.Attention | Recomputation.Block)]
    public void SteadyStateStepsAllocateNothing(ModelFamily family, Recomputation recompute)
    {
        using var data = Data();
        var config = family == ModelFamily.Llama ? Config : Config with { Family = ModelFamily.Gpt2, KvHeads = 0 };
        var t = Trainer.Start(config, Options with { Recompute = recompute }, data, null);
        t.TrainStep();
        t.TrainStep();
        // One-time runtime work (tiered compilation's rejits, lazily made locks) can land in a window, more likely on a
        // loaded machine, and only ever adds bytes: the least of three windows is the steps' own cost.
        long least = long.MaxValue;
        for (int attempt = 0; attempt < 3 && least > 0; attempt++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 3; i++)
                t.TrainStep();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.True(least == 0, $"{least} bytes allocated over 3 steps");
    }
}
