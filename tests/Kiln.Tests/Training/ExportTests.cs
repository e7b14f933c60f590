using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Tokenizers;
using Kiln.Training;
using Kiln.Training.Data;
using Kiln.Training.Export;

namespace Kiln.Tests.Training;

/// <summary>A trained model exported to GGUF runs in Kiln's inference exactly as the trainer's own forward pass predicts.</summary>
public sealed class ExportTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-export-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Text = "first citizen: before we proceed any further, hear me speak.\nall: speak, speak.\n";

    /// <summary>A small Llama trained for 40 steps on a repeated line, so its predictions are decided, not near-ties.</summary>
    private (Trainer Trainer, CharacterTokenizer Tokenizer) Trained()
    {
        var tok = CharacterTokenizer.FromText(Text);
        string path = Path.Combine(_dir, "train.bin");
        TokenStreamFile.Write(path, tok.Encode(string.Concat(Enumerable.Repeat(Text, 20))), tok.VocabSize);
        var data = TokenStream.Open(path);
        var config = new TrainingConfig { Family = ModelFamily.Llama, Layers = 2, Dim = 64, Heads = 4, KvHeads = 2, Vocab = tok.VocabSize, Context = 48 };
        var trainer = Trainer.Start(config, new TrainerOptions { Batch = 4, SequenceLength = 48, Steps = 40, LearningRate = 1e-2f, WarmupSteps = 5 }, data, null);
        for (int i = 0; i < 40; i++)
            trainer.TrainStep();
        return (trainer, tok);
    }

    [Theory]
    [InlineData(GgmlType.F32)]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q8_0)]
    public void ExportedModelGivesTheTrainersLogitsAndGreedyTokens(GgmlType type)
    {
        var (trainer, tok) = Trained();
        string gguf = Path.Combine(_dir, "model.gguf");
        LlamaGgufExporter.Export(trainer.Config, trainer.Model.Parameters.Values, tok, gguf, type);

        using var model = LlamaModel.Load(gguf);
        var tokenizer = Tokenizer.FromGguf(model.File);
        const string prompt = "first citizen: bef";
        int[] ids = tok.Encode(prompt);
        Assert.Equal(ids, tokenizer.Encode(prompt, addSpecial: true));
        Assert.Equal(prompt, tokenizer.Decode(ids));

        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 48, Threads = 1, KvCacheType = KvCacheType.F32 });
        var logits = new float[context.VocabSize];
        context.Evaluate(ids, logits);
        var sequence = new List<int>(ids);
        // F32: same weights, different summation orders: ~1e-5. F16: weights rounded to 11 bits, activations too.
        // Q8_0: weights and activations on 8 bits per block of 32 (relative error up to ~1/254 per value).
        double tolerance = type switch { GgmlType.F32 => 1e-3, GgmlType.F16 => 5e-2, _ => 0.25 };
        for (int step = 0; step < 12; step++)
        {
            trainer.Model.Forward(sequence.ToArray(), [], 1, sequence.Count);
            var trainerLogits = trainer.Model.Logits.Slice((sequence.Count - 1) * tok.VocabSize, tok.VocabSize);
            double worst = 0;
            for (int i = 0; i < trainerLogits.Length; i++)
                worst = Math.Max(worst, Math.Abs(logits[i] - trainerLogits[i]));
            // the byte-fallback tokens after the model's ids copy <unk>'s rows, so they score exactly as <unk>
            Assert.Equal(tok.VocabSize + tok.GgufExtraTokens, logits.Length);
            Assert.All(logits[tok.VocabSize..], l => Assert.Equal(logits[0], l));
            Assert.True(worst < tolerance, $"step {step}: logits differ by {worst}");
            int expected = ArgMax(trainerLogits);
            Assert.Equal(expected, ArgMax(logits));
            sequence.Add(expected);
            context.Evaluate([expected], logits);
        }
        // the model learned the line: it continues the prompt as the text does
        Assert.StartsWith(prompt + "ore", tok.Decode(sequence.ToArray()));
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
            if (x[i] > x[best])
                best = i;
        return best;
    }

    [Fact]
    public void Q8NeedsRowsInBlocksOf32()
    {
        var config = new TrainingConfig { Family = ModelFamily.Llama, Layers = 1, Dim = 48, Heads = 2, Vocab = 10, Context = 8 };
        var e = Assert.Throws<TrainingConfigException>(() =>
            LlamaGgufExporter.Export(config, new float[new Kiln.Training.Models.LlamaTrainModel<float>(config, null).Parameters.Count],
                CharacterTokenizer.FromText("abc"), Path.Combine(_dir, "x.gguf"), GgmlType.Q8_0));
        Assert.Contains("must be multiples of 32", e.Message);
    }

    [Fact]
    public void GptCheckpointsAreRefused()
    {
        var config = new TrainingConfig { Family = ModelFamily.Gpt2, Layers = 1, Dim = 8, Heads = 2, Vocab = 10, Context = 8 };
        var e = Assert.Throws<TrainingConfigException>(() =>
            LlamaGgufExporter.Export(config, new float[10], CharacterTokenizer.FromText("abc"), Path.Combine(_dir, "x.gguf"), GgmlType.F32));
        Assert.Contains("Llama-family", e.Message);
    }
}
