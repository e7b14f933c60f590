using Kiln.Formats.Gguf;
using Kiln.Inference.Generation;
using Kiln.Inference.Sampling;
using Kiln.Models;
using Kiln.Models.Gpt2;
using Kiln.Models.Llama;
using Kiln.Tensors;
using Kiln.Tokenizers;
using Kiln.Training;
using Kiln.Training.Data;
using Kiln.Training.Export;

namespace Kiln.Tests.Models;

/// <summary>
/// A GPT-2 trained by Kiln, exported as llama.cpp's "gpt2" GGUF, runs in Kiln's GPT-2 inference exactly as the
/// trainer's own forward pass predicts; damaged files are refused with one clear error.
/// </summary>
public sealed class Gpt2ExportTests(Gpt2ExportTests.TrainedModel trained) : IDisposable, IClassFixture<Gpt2ExportTests.TrainedModel>
{
    private readonly TrainedModel _trained = trained;
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-gpt2-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Text = "first citizen: before we proceed any further, hear me speak.\nall: speak, speak.\n";

    private string P(string name) => Path.Combine(_dir, name);

    /// <summary>
    /// A small GPT-2 trained for 80 steps on a repeated line (loss ≈ 0.07), so its predictions are decided, not
    /// near-ties. Trained once per test class; the trainer is only used for forward passes afterwards.
    /// </summary>
    public sealed class TrainedModel
    {
        public TrainedModel()
        {
            string dir = Directory.CreateTempSubdirectory("kiln-gpt2-train-").FullName;
            try
            {
                (Trainer, Tokenizer) = Train(CharacterTokenizer.FromText(Text), Path.Combine(dir, "train.bin"));
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }

        public Trainer Trainer { get; }
        public TrainingTokenizer Tokenizer { get; }
    }

    internal static (Trainer Trainer, TrainingTokenizer Tokenizer) Train(TrainingTokenizer tok, string dataPath)
    {
        TokenStreamFile.Write(dataPath, tok.Encode(string.Concat(Enumerable.Repeat(Text, 20))), tok.VocabSize);
        var data = TokenStream.Open(dataPath);
        var config = new TrainingConfig { Family = ModelFamily.Gpt2, Layers = 2, Dim = 64, Heads = 4, Vocab = tok.VocabSize, Context = 48 };
        var trainer = Trainer.Start(config, new TrainerOptions { Batch = 4, SequenceLength = 48, Steps = 80, LearningRate = 5e-3f, WarmupSteps = 5 }, data, null);
        for (int i = 0; i < 80; i++)
            trainer.TrainStep();
        return (trainer, tok);
    }

    private (Trainer Trainer, TrainingTokenizer Tokenizer) Trained() => (_trained.Trainer, _trained.Tokenizer);

    /// <summary>Randomly initialized GPT-2 weights (dim 32) exported as F32: enough for the file-format checks.</summary>
    private void ExportRandom(string path)
    {
        var tok = CharacterTokenizer.FromText(Text);
        var config = new TrainingConfig { Family = ModelFamily.Gpt2, Layers = 2, Dim = 32, Heads = 4, Vocab = tok.VocabSize, Context = 48 };
        var model = new Kiln.Training.Models.GptModel<float>(config, null);
        model.Initialize(new TrainingRandom(7));
        Gpt2GgufExporter.Export(config, model.Parameters.Values, tok, path, GgmlType.F32);
    }

    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
            if (x[i] > x[best])
                best = i;
        return best;
    }

    /// <summary>
    /// Greedy continuation of <paramref name="prompt"/> by Kiln's GPT-2 inference, checked step by step against the
    /// trainer's logits (within <paramref name="tolerance"/>) and its argmax; returns the whole sequence.
    /// </summary>
    private static List<int> CompareGreedily(Trainer trainer, Gpt2Model model, int[] prompt, int steps, double tolerance, KvCacheType cache)
    {
        int vocab = trainer.Config.Vocab;
        using var context = new Gpt2Context(model, new Gpt2ContextOptions { Threads = 1, KvCacheType = cache });
        // the GGUF's vocabulary adds byte-fallback tokens after the trained ones, with <unk>'s logit
        var logits = new float[context.VocabSize];
        context.Evaluate(prompt, logits);
        var sequence = new List<int>(prompt);
        for (int step = 0; step < steps; step++)
        {
            trainer.Model.Forward(sequence.ToArray(), [], 1, sequence.Count);
            var expectedLogits = trainer.Model.Logits.Slice((sequence.Count - 1) * vocab, vocab);
            double worst = 0;
            for (int i = 0; i < vocab; i++)
                worst = Math.Max(worst, Math.Abs(logits[i] - expectedLogits[i]));
            Assert.True(worst < tolerance, $"step {step}: logits differ by {worst}");
            Assert.All(logits[vocab..], l => Assert.Equal(logits[0], l));
            int expected = ArgMax(expectedLogits);
            Assert.Equal(expected, ArgMax(logits));
            sequence.Add(expected);
            context.Evaluate([expected], logits);
        }
        return sequence;
    }

    [Fact]
    public void F32ExportGivesTheTrainersLogitsWithin1e4AndItsGreedyTokens()
    {
        var (trainer, tok) = Trained();
        Gpt2GgufExporter.Export(trainer.Config, trainer.Model.Parameters.Values, tok, P("m.gguf"), GgmlType.F32);
        using var model = Gpt2Model.Load(P("m.gguf"));
        Assert.Equal(trainer.Config.Context, model.Config.ContextLength);
        Assert.Equal(trainer.Config.FfnDim, model.Config.FeedForwardLength);
        Assert.Same(model.TokenEmbedding, model.Output); // tied: no output.weight written
        Assert.Null(model.File.FindTensor("output.weight"));

        const string prompt = "first citizen: bef";
        var sequence = CompareGreedily(trainer, model, tok.Encode(prompt), 20, 1e-4, KvCacheType.F32);
        // the model learned the line: it continues the prompt as the text does
        Assert.StartsWith(prompt + "ore we", tok.Decode(sequence.ToArray()));
    }

    /// <summary>Prompt processing in one batch gives every position's logits as the trainer computes them.</summary>
    [Fact]
    public void BatchedPromptGivesTheTrainersLogitsAtEveryPosition()
    {
        var (trainer, tok) = Trained();
        Gpt2GgufExporter.Export(trainer.Config, trainer.Model.Parameters.Values, tok, P("m.gguf"), GgmlType.F32);
        using var model = Gpt2Model.Load(P("m.gguf"));
        int[] ids = tok.Encode(Text[..40]);
        int vocab = trainer.Config.Vocab;
        using var context = new Gpt2Context(model, new Gpt2ContextOptions { Threads = 2, MaxBatch = 16, KvCacheType = KvCacheType.F32 });
        int full = context.VocabSize;
        var all = new float[ids.Length * full];
        context.Evaluate(ids, all, allLogits: true);
        trainer.Model.Forward(ids, [], 1, ids.Length);
        double worst = 0;
        for (int t = 0; t < ids.Length; t++)
        for (int i = 0; i < vocab; i++)
            worst = Math.Max(worst, Math.Abs(all[t * full + i] - trainer.Model.Logits[t * vocab + i]));
        Assert.True(worst < 1e-4, $"logits differ by {worst}");
        Assert.Equal(ids.Length, context.Position);
    }

    /// <summary>The tiled online-softmax attention (-fa) gives the default attention's logits up to float rounding.</summary>
    [Fact]
    public void FlashAttentionAgreesWithTheDefault()
    {
        var (trainer, tok) = Trained();
        Gpt2GgufExporter.Export(trainer.Config, trainer.Model.Parameters.Values, tok, P("m.gguf"), GgmlType.F32);
        using var model = Gpt2Model.Load(P("m.gguf"));
        int[] ids = tok.Encode(Text[..45]);
        int vocab = model.Config.VocabSize;
        var plain = new float[ids.Length * vocab];
        var flash = new float[ids.Length * vocab];
        using (var context = new Gpt2Context(model, new Gpt2ContextOptions { Threads = 2, KvCacheType = KvCacheType.F32 }))
            context.Evaluate(ids, plain, allLogits: true);
        using (var context = new Gpt2Context(model, new Gpt2ContextOptions { Threads = 2, KvCacheType = KvCacheType.F32, FlashAttention = true }))
            context.Evaluate(ids, flash, allLogits: true);
        double worst = 0;
        for (int i = 0; i < plain.Length; i++)
            worst = Math.Max(worst, Math.Abs(plain[i] - flash[i]));
        Assert.True(worst < 1e-4, $"logits differ by {worst}");
    }

    [Theory]
    [InlineData(GgmlType.F16)]
    [InlineData(GgmlType.Q8_0)]
    public void QuantizedExportsGiveTheTrainersGreedyTokensOnTheMemorizedLine(GgmlType type)
    {
        var (trainer, tok) = Trained();
        Gpt2GgufExporter.Export(trainer.Config, trainer.Model.Parameters.Values, tok, P("m.gguf"), type);
        using var model = Gpt2Model.Load(P("m.gguf"));
        Assert.Equal(type, model.Layers[0].Qkv.Type);
        Assert.Equal(GgmlType.F32, model.File.GetTensor("blk.0.attn_qkv.bias").Type);
        // F16: weights rounded to 11 bits; Q8_0: weights and activations on 8 bits per block of 32.
        double tolerance = type == GgmlType.F16 ? 5e-2 : 0.3;
        var sequence = CompareGreedily(trainer, model, tok.Encode(Text[..24]), 16, tolerance, KvCacheType.F16);
        Assert.StartsWith(Text[..40], tok.Decode(sequence.ToArray()));
    }

    [Fact]
    public void CharacterTokenizerRoundTripsThroughTheGguf()
    {
        var (trainer, tok) = Trained();
        Gpt2GgufExporter.Export(trainer.Config, trainer.Model.Parameters.Values, tok, P("m.gguf"), GgmlType.F32);
        using var file = GgufFile.Open(P("m.gguf"));
        Assert.Equal("gpt2", file.GetString("general.architecture"));
        var tokenizer = Tokenizer.FromGguf(file);
        Assert.Equal(tok.Encode(Text), tokenizer.Encode(Text, addSpecial: true));
        Assert.Equal(Text, tokenizer.Decode(tok.Encode(Text)));
    }

    /// <summary>A byte-level BPE from Kiln's trainer goes into the GGUF as GPT-2's tokenizer and generates the trainer's tokens.</summary>
    [Fact]
    public void BytePairTokenizerRoundTripsAndGeneratesThroughTextGenerator()
    {
        var bpe = BytePairVocabularyTrainer.Train([string.Concat(Enumerable.Repeat(Text, 10))], 300);
        var (trainer, tok) = Train(bpe, P("bpe.bin"));
        Gpt2GgufExporter.Export(trainer.Config, trainer.Model.Parameters.Values, tok, P("m.gguf"), GgmlType.F32);
        using var model = Gpt2Model.Load(P("m.gguf"));
        var tokenizer = Tokenizer.FromGguf(model.File);
        Assert.Equal("gpt2", model.File.GetString("tokenizer.ggml.model"));
        Assert.Equal(tok.Encode(Text), tokenizer.Encode(Text, addSpecial: false));
        Assert.Equal(Text, tokenizer.Decode(tok.Encode(Text)));

        int[] prompt = tok.Encode("first citizen");
        int[] expected = TrainingSampler.Generate(trainer.Model, prompt, 6, 0f, new TrainingRandom(1));
        using IModelContext context = new Gpt2Context(model, new Gpt2ContextOptions { Threads = 1 });
        var sink = new CollectingSink();
        new TextGenerator(context, tokenizer).Generate(prompt, new GenerationOptions
        {
            MaxTokens = 6,
            Sampler = new SamplerOptions { Temperature = 0f },
            IgnoreEndOfSequence = true,
        }, sink);
        Assert.Equal(expected.AsSpan(prompt.Length).ToArray(), sink.Tokens);
    }

    private sealed class CollectingSink : ITextSink
    {
        public List<int> Tokens { get; } = [];
        public void OnToken(int token, ReadOnlySpan<char> text) => Tokens.Add(token);
        public void OnFinalText(ReadOnlySpan<char> text) { }
    }

    [Fact]
    public void AContextLongerThanTheLearnedPositionsIsRefused()
    {
        var (trainer, tok) = Trained();
        Gpt2GgufExporter.Export(trainer.Config, trainer.Model.Parameters.Values, tok, P("m.gguf"), GgmlType.F32);
        using var model = Gpt2Model.Load(P("m.gguf"));
        var e = Assert.Throws<ArgumentException>(() => new Gpt2Context(model, new Gpt2ContextOptions { ContextLength = 49 }));
        Assert.Contains("48 learned positions", e.Message);
        using var context = new Gpt2Context(model, new Gpt2ContextOptions { Threads = 1 });
        Assert.Equal(48, context.ContextLength);
        Assert.Throws<ContextOverflowException>(() => context.Evaluate(new int[49], new float[context.VocabSize]));
    }

    /// <summary>Copies an exported file with one tensor dropped or replaced.</summary>
    private void Rewrite(string from, string to, string tensor, long[]? newShape)
    {
        using var file = GgufFile.Open(from);
        var w = new GgufWriter();
        foreach (var (key, value) in file.MetadataList)
            w.SetMetadata(key, value);
        foreach (var t in file.Tensors)
        {
            byte[] bytes = file.GetTensorBytes(t).ToArray();
            if (t.Name != tensor)
            {
                w.AddTensor(t.Name, t.Type, t.Dimensions, bytes);
            }
            else if (newShape is not null)
            {
                long count = newShape.Aggregate(1L, (a, b) => a * b);
                w.AddTensor(t.Name, t.Type, newShape, bytes.AsMemory(0, checked((int)(count * 4))));
            }
        }
        w.Write(to);
    }

    [Theory]
    [InlineData("position_embd.weight", null, "missing tensor position_embd.weight")]
    [InlineData("blk.1.attn_qkv.bias", null, "missing tensor blk.1.attn_qkv.bias")]
    [InlineData("output_norm.bias", null, "missing tensor output_norm.bias")]
    // an unfused projection ([dim, dim], as attn_q would be) where the fused [dim, 3·dim] belongs
    [InlineData("blk.0.attn_qkv.weight", new long[] { 32, 32 }, "tensor blk.0.attn_qkv.weight has shape [32, 32], expected [32, 96]")]
    [InlineData("blk.0.ffn_up.weight", new long[] { 128, 32 }, "tensor blk.0.ffn_up.weight has shape [128, 32], expected [32, 128]")]
    [InlineData("blk.0.ffn_norm.bias", new long[] { 16 }, "tensor blk.0.ffn_norm.bias has shape [16], expected [32]")]
    public void DamagedGpt2FilesAreRefusedWithOneClearError(string tensor, long[]? shape, string message)
    {
        ExportRandom(P("good.gguf"));
        Rewrite(P("good.gguf"), P("bad.gguf"), tensor, shape);
        var e = Assert.Throws<ModelFormatException>(() => Gpt2Model.Load(P("bad.gguf")));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AMissingLayerNormEpsilonIsNamed()
    {
        ExportRandom(P("good.gguf"));
        using (var file = GgufFile.Open(P("good.gguf")))
        {
            var w = new GgufWriter();
            foreach (var (key, value) in file.MetadataList)
                if (key != "gpt2.attention.layer_norm_epsilon")
                    w.SetMetadata(key, value);
            foreach (var t in file.Tensors)
                w.AddTensor(t.Name, t.Type, t.Dimensions, file.GetTensorBytes(t).ToArray());
            w.Write(P("bad.gguf"));
        }
        var e = Assert.Throws<ModelFormatException>(() => Gpt2Model.Load(P("bad.gguf")));
        Assert.Contains("missing gpt2.attention.layer_norm_epsilon", e.Message);
    }

    [Fact]
    public void TheLlamaLoaderStillRefusesGpt2AndTheGpt2ExporterRefusesLlama()
    {
        ExportRandom(P("m.gguf"));
        var e = Assert.Throws<ModelFormatException>(() => LlamaModel.Load(P("m.gguf")));
        Assert.Contains("architecture 'gpt2' is not supported", e.Message);

        var llama = new TrainingConfig { Family = ModelFamily.Llama, Layers = 1, Dim = 8, Heads = 2, Vocab = 10, Context = 8 };
        var refused = Assert.Throws<TrainingConfigException>(() =>
            Gpt2GgufExporter.Export(llama, new float[10], CharacterTokenizer.FromText("abc"), P("x.gguf"), GgmlType.F32));
        Assert.Contains("GPT-2-family", refused.Message);
    }
}
