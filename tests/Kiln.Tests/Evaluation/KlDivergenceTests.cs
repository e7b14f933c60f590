using Kiln.Evaluation;
using Kiln.Models.Llama;
using Kiln.Tokenizers;

namespace Kiln.Tests.Evaluation;

/// <summary>
/// llama-perplexity's KL-divergence files and statistics: the 16-bit log-probability records against exact
/// log-softmax, the file round trip and its refusals, and the accumulated KLD / top-1 agreement against the
/// definitions evaluated in double precision on the raw logits of two random models.
/// </summary>
public sealed class KlDivergenceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-kld-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(513, 3f)]   // odd vocabulary: the record is padded to an even length
    [InlineData(64, 40f)]   // a spread wider than 16: the low logits clamp to the lowest level
    public void RecordsHoldLogProbabilitiesToHalfAStep(int vocab, float spread)
    {
        var rng = new Random(vocab);
        var logits = new float[vocab];
        for (int i = 0; i < vocab; i++)
            logits[i] = (float)(rng.NextDouble() * spread - spread / 2);
        var record = new ushort[KlDivergenceBaseWriter.RecordLength(vocab)];
        Assert.Equal(4 + vocab + vocab % 2, record.Length);
        KlDivergenceBaseWriter.EncodeRow(logits, record);

        float scale = BitConverter.Int32BitsToSingle(record[0] | record[1] << 16);
        float minLogProb = BitConverter.Int32BitsToSingle(record[2] | record[3] << 16);
        double[] exact = ReferenceLogSoftmax.Of(logits);
        double floor = exact.Max() - 16;
        for (int i = 0; i < vocab; i++)
        {
            double decoded = scale * record[4 + i] + minLogProb;
            if (exact[i] > floor)
                Assert.True(Math.Abs(decoded - exact[i]) <= 0.5 * scale + 1e-5, $"token {i}: {decoded} vs {exact[i]}");
            else
                Assert.Equal(0, record[4 + i]);
        }
        Assert.Equal(Math.Max(floor, exact.Min()), minLogProb, 4); // the lowest level: the smallest logit, at most 16 below the top
    }

    [Fact]
    public void ConstantLogitsGiveAZeroScaleAndUniformProbability()
    {
        var record = new ushort[KlDivergenceBaseWriter.RecordLength(10)];
        KlDivergenceBaseWriter.EncodeRow(Enumerable.Repeat(2.5f, 10).ToArray(), record);
        Assert.Equal(0f, BitConverter.Int32BitsToSingle(record[0] | record[1] << 16));
        Assert.Equal(-Math.Log(10), BitConverter.Int32BitsToSingle(record[2] | record[3] << 16), 5);
        Assert.All(record[4..], q => Assert.Equal(0, q));
    }

    [Fact]
    public void BaseFileRoundTripsAndRefusesOtherFiles()
    {
        string path = Path.Combine(_dir, "base.bin");
        int[] tokens = Enumerable.Range(0, 24).ToArray();
        var logits = new float[(12 - 1 - 6) * 7];
        for (int i = 0; i < logits.Length; i++)
            logits[i] = i % 7;
        using (var writer = new KlDivergenceBaseWriter(path, 12, 7, tokens))
        {
            writer.OnChunk(0, logits, tokens.AsSpan(7, 5), 7);
            writer.OnChunk(1, logits, tokens.AsSpan(19, 5), 7);
            writer.Commit();
        }
        Assert.Equal(["base.bin"], Directory.GetFiles(_dir).Select(Path.GetFileName));
        Assert.Equal(8 + 12 + 24 * 4 + 2 * 5 * 12 * 2, new FileInfo(path).Length);

        var expected = new ushort[5 * 12];
        for (int r = 0; r < 5; r++)
            KlDivergenceBaseWriter.EncodeRow(logits.AsSpan(r * 7, 7), expected.AsSpan(r * 12, 12));
        using (var reader = KlDivergenceBaseReader.Open(path))
        {
            Assert.Equal((12, 7, 2, 5), (reader.ContextLength, reader.Vocab, reader.Chunks, reader.RowsPerChunk));
            Assert.Equal(tokens, reader.Tokens);
            var records = new ushort[expected.Length];
            reader.ReadChunk(records);
            Assert.Equal(expected, records);
        }

        byte[] bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^2]);
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => KlDivergenceBaseReader.Open(path)).Message);
        File.WriteAllText(path, "GGUF and other things that are not log-probabilities");
        Assert.Contains("not a KL-divergence base file", Assert.Throws<InvalidDataException>(() => KlDivergenceBaseReader.Open(path)).Message);
    }

    [Fact]
    public void UncommittedBaseFileIsRemoved()
    {
        using (new KlDivergenceBaseWriter(Path.Combine(_dir, "base.bin"), 12, 7, new int[12]))
        {
        }
        Assert.Empty(Directory.GetFiles(_dir));
    }

    private sealed class Capture : IScoredLogitsObserver
    {
        public List<float[]> Rows { get; } = [];

        public void OnChunk(int chunk, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab)
        {
            for (int r = 0; r < targets.Length; r++)
                Rows.Add(logits.Slice(r * vocab, vocab).ToArray());
        }
    }

    private sealed class Both(IScoredLogitsObserver a, IScoredLogitsObserver b) : IScoredLogitsObserver
    {
        public void OnChunk(int chunk, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab)
        {
            a.OnChunk(chunk, logits, targets, vocab);
            b.OnChunk(chunk, logits, targets, vocab);
        }
    }

    private (PerplexityResult Result, Capture Rows) Evaluate(string model, int[] tokens, IScoredLogitsObserver? observer)
    {
        using var llama = LlamaModel.Load(model);
        using var evaluator = new PerplexityEvaluator(llama, Tokenizer.FromGguf(llama.File), new PerplexityOptions { ContextLength = 32, Threads = 1 });
        var capture = new Capture();
        var result = evaluator.Evaluate(tokens, null, default, observer is null ? capture : new Both(observer, capture));
        return (result, capture);
    }

    [Theory]
    [InlineData(1234)] // the model against itself
    [InlineData(99)]   // against another random model
    public void StatisticsMatchTheDefinitionsOnRawLogits(int seed)
    {
        var spec = new RandomLlama();
        string basePath = spec.Write(Path.Combine(_dir, "base.gguf"));
        string otherPath = new RandomLlama { Seed = seed }.Write(Path.Combine(_dir, "other.gguf"));
        var rng = new Random(3);
        int[] tokens = Enumerable.Range(0, 32 * 6).Select(_ => rng.Next(3, spec.Vocab)).ToArray();
        string file = Path.Combine(_dir, "base.bin");

        PerplexityResult baseResult;
        Capture baseRows;
        using (var writer = new KlDivergenceBaseWriter(file, 32, spec.Vocab, tokens))
        {
            (baseResult, baseRows) = Evaluate(basePath, tokens, writer);
            writer.Commit();
        }
        using var reader = KlDivergenceBaseReader.Open(file);
        var accumulator = new KlDivergenceAccumulator(reader);
        var (result, rows) = Evaluate(otherPath, reader.Tokens, accumulator);
        var k = accumulator.Result();

        double kld = 0;
        int sameTop = 0;
        for (int r = 0; r < rows.Rows.Count; r++)
        {
            double[] p = ReferenceLogSoftmax.Of(baseRows.Rows[r]), q = ReferenceLogSoftmax.Of(rows.Rows[r]);
            for (int i = 0; i < p.Length; i++)
                kld += Math.Exp(p[i]) * (p[i] - q[i]);
            if (Array.IndexOf(p, p.Max()) == Array.IndexOf(q, q.Max()))
                sameTop++;
        }
        kld /= rows.Rows.Count;

        Assert.Equal(6 * 15, k.Tokens);
        Assert.Equal(result.Perplexity, k.Perplexity.Value, 1e-4 * result.Perplexity);
        Assert.Equal(baseResult.Perplexity, k.BasePerplexity.Value, 1e-3 * baseResult.Perplexity);
        Assert.Equal(k.Perplexity.Value - k.BasePerplexity.Value, k.PerplexityDifference.Value, 1e-9);
        // the base side is stored to 16 bits over a 16-nat range: about 1e-4 per log-probability
        Assert.True(Math.Abs(k.MeanKld.Value - kld) <= 1e-4 + 1e-3 * kld, $"KLD {k.MeanKld.Value} vs exact {kld}");
        Assert.InRange(k.SameTop.Value * k.Tokens, sameTop - 1, sameTop + 1);
        if (seed == 1234)
        {
            Assert.True(k.MeanKld.Value < 1e-5, $"self KLD {k.MeanKld.Value}");
            Assert.True(k.SameTop.Value > 0.98);
        }
        else
        {
            Assert.True(kld > 0.01, $"two random models should differ, KLD {kld}");
        }
    }
}
