using Kiln.Benchmarking;
using Kiln.Models.Llama;

namespace Kiln.Tests.Benchmarking;

public sealed class InferenceBenchmarkTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-bench-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void MeasuresEachRepetitionFromAnEmptyContext()
    {
        using var model = LlamaModel.Load(new RandomLlama().Write(Path.Combine(_dir, "m.gguf")));
        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 16, MaxBatch = 4, Threads = 1 });

        var pp = InferenceBenchmark.MeasurePrompt(context, 10, repetitions: 3);
        Assert.Equal(("pp10", 3), (pp.Name, pp.TokensPerSecond.Count));
        Assert.All(pp.TokensPerSecond, r => Assert.True(r > 0 && double.IsFinite(r)));
        // The whole prompt went in, across three batches of at most 4.
        Assert.Equal(10, context.Position);

        var tg = InferenceBenchmark.MeasureGeneration(context, 16, repetitions: 2, firstToken: 1);
        Assert.Equal(("tg16", InferenceTestKind.TextGeneration, 2), (tg.Name, tg.Kind, tg.TokensPerSecond.Count));
        Assert.Equal(16, context.Position);

        Assert.Throws<ArgumentOutOfRangeException>(() => InferenceBenchmark.MeasurePrompt(context, 17, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => InferenceBenchmark.MeasureGeneration(context, 4, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => InferenceBenchmark.MeasureGeneration(context, 4, 1, model.Config.VocabSize));
    }

    [Fact]
    public void MeanAndSampleStandardDeviationAsLlamaBench()
    {
        var m = new InferenceMeasurement(InferenceTestKind.PromptProcessing, 512, [10.0, 12.0, 14.0]);
        Assert.Equal(12.0, m.Mean, 12);
        Assert.Equal(2.0, m.StandardDeviation, 12); // sqrt((4 + 0 + 4) / (3 - 1))
        Assert.Equal(0.0, new InferenceMeasurement(InferenceTestKind.TextGeneration, 1, [5.0]).StandardDeviation);
    }
}
