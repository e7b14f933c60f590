using Kiln.Evaluation;
using Kiln.Models.Llama;
using Kiln.Tests.Models;
using Kiln.Tokenizers;

namespace Kiln.Tests.Evaluation;

/// <summary>The perplexity evaluator on a random model, against llama-perplexity's method written out plainly.</summary>
public sealed class PerplexityEvaluatorTests : IDisposable
{
    private const int Bos = 1;
    private readonly string _dir = Directory.CreateTempSubdirectory("kiln-ppl-").FullName;
    private readonly RandomLlama _spec = new();

    public PerplexityEvaluatorTests() => _spec.Write(ModelPath);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string ModelPath => Path.Combine(_dir, "random.gguf");

    /// <summary>Random ids that are never BOS, so replacing each chunk's first token is visible.</summary>
    private int[] RandomTokens(int count, int seed)
    {
        var rng = new Random(seed);
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
            tokens[i] = rng.Next(3, _spec.Vocab);
        tokens[0] = Bos;
        return tokens;
    }

    private PerplexityEvaluator Evaluator(LlamaModel model, int n, KvCacheType cache = KvCacheType.F32, int maxChunks = 0)
        => new(model, Tokenizer.FromGguf(model.File), new PerplexityOptions { ContextLength = n, Threads = 2, KvCacheType = cache, MaxChunks = maxChunks });

    /// <summary>
    /// llama-perplexity's definition evaluated with the naive double-precision model: per whole chunk,
    /// BOS first, every position from n/2 to n−2 scored against the next token; the running value per
    /// chunk; the error as perplexity × the standard error of the NLLs (two-pass variance here).
    /// </summary>
    private (double Ppl, double Error, double[] Running, int Scored) Direct(int[] tokens, int n)
    {
        var nlls = new List<double>();
        var running = new List<double>();
        for (int c = 0; c + n <= tokens.Length; c += n)
        {
            int[] chunk = tokens[c..(c + n)];
            chunk[0] = Bos;
            double[][] logits = NaiveLlama.Logits(_spec, chunk);
            for (int j = n / 2; j <= n - 2; j++)
            {
                double max = logits[j].Max();
                double logZ = max + Math.Log(logits[j].Sum(l => Math.Exp(l - max)));
                nlls.Add(logZ - logits[j][chunk[j + 1]]);
            }
            running.Add(Math.Exp(nlls.Average()));
        }
        double mean = nlls.Average();
        double variance = nlls.Sum(v => (v - mean) * (v - mean)) / nlls.Count;
        double ppl = Math.Exp(mean);
        return (ppl, ppl * Math.Sqrt(variance / (nlls.Count - 1)), [.. running], nlls.Count);
    }

    private static void AssertRelative(double expected, double actual, double tolerance, string what)
        => Assert.True(Math.Abs(actual - expected) <= tolerance * Math.Abs(expected), $"{what}: expected {expected:G9}, got {actual:G9}");

    [Theory]
    [InlineData(16, 3 * 16 + 5)]
    [InlineData(8, 4 * 8)]
    [InlineData(32, 32 + 31)]
    public void EqualsTheDirectComputationWithTheNaiveModel(int n, int length)
    {
        int[] tokens = RandomTokens(length, seed: n);
        var expected = Direct(tokens, n);
        using var model = LlamaModel.Load(ModelPath);
        using var evaluator = Evaluator(model, n);
        var chunks = new List<PerplexityChunk>();
        var result = evaluator.Evaluate(tokens, chunks.Add);

        Assert.Equal(length / n, result.Chunks);
        Assert.Equal(expected.Scored, result.ScoredTokens);
        Assert.Equal(length, result.TokenCount);
        Assert.Equal(n, result.ContextLength);
        AssertRelative(expected.Ppl, result.Perplexity, 1e-4, "perplexity");
        AssertRelative(expected.Error, result.Uncertainty, 1e-3, "error estimate");
        AssertRelative(Math.Log(expected.Ppl), result.MeanNegativeLogLikelihood, 1e-4, "mean NLL");
        for (int c = 0; c < expected.Running.Length; c++)
            AssertRelative(expected.Running[c], result.RunningPerplexities[c], 1e-4, $"running value after chunk {c + 1}");

        // Progress: one report per chunk, in order, carrying the running values.
        Assert.Equal(Enumerable.Range(1, result.Chunks), chunks.Select(c => c.Number));
        Assert.All(chunks, c => Assert.Equal(result.Chunks, c.Total));
        Assert.Equal(result.RunningPerplexities, chunks.Select(c => c.RunningPerplexity));
        Assert.Equal(result.Perplexity, chunks[^1].RunningPerplexity);

        // A trailing partial chunk is ignored.
        var whole = evaluator.Evaluate(tokens.AsSpan(0, length / n * n));
        Assert.Equal(result.Perplexity, whole.Perplexity);
    }

    /// <summary>
    /// Kiln evaluates each chunk's first half without logits; with the default F16 cache that must give
    /// what one all-logits batch gives, the evaluation llama.cpp's reference figures come from.
    /// </summary>
    [Fact]
    public void SplittingTheChunkChangesNothing()
    {
        const int n = 32;
        int[] tokens = RandomTokens(3 * n, seed: 5);
        using var model = LlamaModel.Load(ModelPath);
        using var evaluator = Evaluator(model, n, KvCacheType.F16);
        var result = evaluator.Evaluate(tokens);

        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = n, MaxBatch = n, Threads = 2 });
        var logits = new float[n * _spec.Vocab];
        double nll = 0;
        int count = 0;
        for (int c = 0; c < 3; c++)
        {
            int[] chunk = tokens[(c * n)..((c + 1) * n)];
            chunk[0] = Bos;
            context.Reset();
            context.Evaluate(chunk, logits, allLogits: true);
            for (int j = n / 2; j <= n - 2; j++)
            {
                var row = logits.AsSpan(j * _spec.Vocab, _spec.Vocab);
                double max = double.NegativeInfinity;
                foreach (float l in row) max = Math.Max(max, l);
                double sum = 0;
                foreach (float l in row) sum += Math.Exp(l - max);
                nll += max + Math.Log(sum) - row[chunk[j + 1]];
                count++;
            }
        }
        AssertRelative(Math.Exp(nll / count), result.Perplexity, 1e-6, "perplexity");
    }

    [Fact]
    public void TextIsTokenizedOnceWithBos()
    {
        using var model = LlamaModel.Load(ModelPath);
        var tokenizer = Tokenizer.FromGguf(model.File);
        using var evaluator = new PerplexityEvaluator(model, tokenizer, new PerplexityOptions { ContextLength = 16, Threads = 1 });
        string text = string.Concat(Enumerable.Repeat("Once upon a time the cat sat. ", 4));
        int[] tokens = evaluator.Tokenize(text);
        Assert.Equal(tokenizer.Encode(text, addSpecial: true), tokens);
        Assert.Equal(Bos, tokens[0]);

        var fromText = evaluator.Evaluate(text);
        var fromTokens = evaluator.Evaluate(tokens);
        Assert.Equal(tokens.Length, fromText.TokenCount);
        Assert.Equal(tokens.Length / 16, fromText.Chunks);
        Assert.Equal(fromTokens.Perplexity, fromText.Perplexity);
        Assert.True(fromText.Perplexity > 1 && fromText.Perplexity < _spec.Vocab * 100, $"perplexity {fromText.Perplexity}");
    }

    [Fact]
    public void MaxChunksLimitsTheEvaluation()
    {
        int[] tokens = RandomTokens(5 * 16, seed: 9);
        using var model = LlamaModel.Load(ModelPath);
        using var all = Evaluator(model, 16);
        using var two = Evaluator(model, 16, maxChunks: 2);
        var full = all.Evaluate(tokens);
        var limited = two.Evaluate(tokens);
        Assert.Equal(5, full.Chunks);
        Assert.Equal(2, limited.Chunks);
        Assert.Equal(2, two.ChunkCount(tokens.Length));
        Assert.Equal(full.RunningPerplexities[1], limited.Perplexity);
    }

    [Fact]
    public void ScoringAllocatesNothingPerChunkOrToken()
    {
        const int n = 32;
        int[] tokens = RandomTokens(8 * n, seed: 11);
        using var model = LlamaModel.Load(ModelPath);
        using var evaluator = Evaluator(model, n);
        long Cost(int chunks)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            evaluator.Evaluate(tokens.AsSpan(0, chunks * n));
            return GC.GetAllocatedBytesForCurrentThread() - before;
        }
        // One-time runtime work (tiered compilation, lazily created locks) only ever adds bytes: warm up,
        // then take the least of three windows.
        for (int i = 0; i < 6; i++)
            Cost(8);
        Thread.Sleep(300);
        long Least(int chunks) => Enumerable.Range(0, 3).Min(_ => Cost(chunks));
        // Only the result's array of running values grows with the chunk count.
        Assert.Equal(6 * sizeof(double), Least(8) - Least(2));
    }

    [Fact]
    public void BadContextLengthsAreClearArgumentErrors()
    {
        using var model = LlamaModel.Load(ModelPath);
        var tokenizer = Tokenizer.FromGguf(model.File);
        string Message(int n, int maxChunks = 0) => Assert.Throws<ArgumentException>(
            () => new PerplexityEvaluator(model, tokenizer, new PerplexityOptions { ContextLength = n, MaxChunks = maxChunks })).Message;

        Assert.Equal("perplexity context 17 must be even (the second half of each chunk is scored)", Message(17));
        Assert.Equal("perplexity context 2 is too small: it must be at least 4 tokens", Message(2));
        Assert.Equal($"perplexity context 66 is larger than the model's context length {_spec.Context}", Message(66));
        Assert.Contains("larger than the model's context length", Message(PerplexityOptions.DefaultContextLength));
        Assert.Contains("must not be negative", Message(16, maxChunks: -1));
    }

    [Fact]
    public void TextShorterThanOneChunkIsAClearError()
    {
        using var model = LlamaModel.Load(ModelPath);
        using var evaluator = Evaluator(model, 32);
        var e = Assert.Throws<ArgumentException>(() => evaluator.Evaluate(RandomTokens(31, seed: 1)));
        Assert.Equal("the text is 31 tokens long, but perplexity with a context of 32 needs at least 32 tokens (one chunk)", e.Message);
        Assert.Throws<ArgumentException>(() => evaluator.Evaluate(""));
    }

    [Fact]
    public void CancellationStopsBetweenChunks()
    {
        using var model = LlamaModel.Load(ModelPath);
        using var evaluator = Evaluator(model, 16);
        using var cts = new CancellationTokenSource();
        int seen = 0;
        Assert.Throws<OperationCanceledException>(() => evaluator.Evaluate(RandomTokens(4 * 16, seed: 2), c =>
        {
            seen = c.Number;
            if (c.Number == 2)
                cts.Cancel();
        }, cts.Token));
        Assert.Equal(2, seen);
    }
}
