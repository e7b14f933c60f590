using Kiln.Models.Llama;

namespace Kiln.Tests.Models;

/// <summary>Kiln's Llama forward pass against llama.cpp's outputs for the real trained stories260K model.</summary>
public class StoriesReferenceTests
{
    private static int ArgMax(ReadOnlySpan<float> x)
    {
        int best = 0;
        for (int i = 1; i < x.Length; i++)
        {
            if (x[i] > x[best])
                best = i;
        }
        return best;
    }

    private static double[] LogSoftmax(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (float l in logits)
            max = Math.Max(max, l);
        double sum = 0;
        foreach (float l in logits)
            sum += Math.Exp(l - max);
        double logZ = max + Math.Log(sum);
        var result = new double[logits.Length];
        for (int i = 0; i < logits.Length; i++)
            result[i] = logits[i] - logZ;
        return result;
    }

    /// <summary>Greedy decoding with the raw model API, so the test depends on nothing but the forward pass.</summary>
    internal static int[] Greedy(LlamaContext context, int[] prompt, int count, List<double[]>? logProbs = null)
    {
        var logits = new float[context.VocabSize];
        context.Evaluate(prompt, logits);
        var output = new int[count];
        for (int i = 0; i < count; i++)
        {
            logProbs?.Add(LogSoftmax(logits));
            output[i] = ArgMax(logits);
            context.Evaluate([output[i]], logits);
        }
        return output;
    }

    [SharedTheory]
    [MemberData(nameof(StoriesReferences.Indices), MemberType = typeof(StoriesReferences))]
    public void GreedyTokensEqualLlamaCpp(int index)
    {
        var c = StoriesReferences.Cases[index];
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2 });
        Assert.Equal(c.GeneratedIds, Greedy(context, c.PromptIds, c.GeneratedIds.Length));
    }

    /// <summary>
    /// Top-5 log-probabilities at all 240 generated positions against llama-server's. With llama.cpp's
    /// F16 KV cache, rounding to F16 turns float summation-order differences into ~1e-4 changes that
    /// accumulate along the sequence: re-ordering only Kiln's own Q·K sums moves its log-probs by a mean
    /// of 1.0e-4 (worst 2.9e-3). So agreement is asserted as measured (median 4.8e-5, 65% within 1e-4,
    /// worst 3.8e-3) with margin; exact 1e-4 everywhere needs bit-identical reduction orders.
    /// </summary>
    [SharedFact]
    public void LogProbabilitiesTrackLlamaCpp()
    {
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        var diffs = new List<double>();
        foreach (var c in StoriesReferences.Cases)
        {
            using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2 });
            var logProbs = new List<double[]>();
            Greedy(context, c.PromptIds, c.Positions.Length, logProbs);
            for (int pos = 0; pos < c.Positions.Length; pos++)
            {
                foreach (var top in c.Positions[pos].Top)
                {
                    double diff = Math.Abs(logProbs[pos][top.Id] - top.LogProb);
                    Assert.True(diff < 5e-3,
                        $"prompt '{c.Prompt}', position {pos}, token {top.Id}: kiln {logProbs[pos][top.Id]:F7}, llama.cpp {top.LogProb:F7}");
                    diffs.Add(diff);
                }
            }
        }
        diffs.Sort();
        double median = diffs[diffs.Count / 2];
        Assert.True(median <= 1e-4, $"median |Δ log-prob| {median:E2} over {diffs.Count} values");
    }

    /// <summary>The logits of the prompt itself, before generated tokens enter the cache, agree tightly.</summary>
    [SharedFact]
    public void PromptLogProbabilitiesAgreeWithLlamaCpp()
    {
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        foreach (var c in StoriesReferences.Cases)
        {
            using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2 });
            var logProbs = new List<double[]>();
            Greedy(context, c.PromptIds, 1, logProbs);
            foreach (var top in c.Positions[0].Top)
                Assert.True(Math.Abs(logProbs[0][top.Id] - top.LogProb) < 2e-4, $"prompt '{c.Prompt}', token {top.Id}: kiln {logProbs[0][top.Id]:F7}, llama.cpp {top.LogProb:F7}");
        }
    }

    [SharedFact]
    public void BatchedPromptMatchesTokenByToken()
    {
        var c = StoriesReferences.Cases[2];
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        using var batched = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2 });
        using var single = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 1, MaxBatch = 1 });
        var all = new float[c.PromptIds.Length * model.Config.VocabSize];
        batched.Evaluate(c.PromptIds, all, allLogits: true);
        var one = new float[model.Config.VocabSize];
        for (int t = 0; t < c.PromptIds.Length; t++)
        {
            single.Evaluate([c.PromptIds[t]], one);
            var row = all.AsSpan(t * one.Length, one.Length);
            for (int i = 0; i < one.Length; i++)
                Assert.True(Math.Abs(row[i] - one[i]) <= 1e-4f * (1 + Math.Abs(one[i])), $"token {t}, logit {i}: {row[i]} vs {one[i]}");
        }
    }

    [SharedFact]
    public void ThreadCountDoesNotChangeTheResult()
    {
        var c = StoriesReferences.Cases[0];
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        float[] Run(int threads)
        {
            using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 64, Threads = threads });
            var logits = new float[model.Config.VocabSize];
            context.Evaluate(c.PromptIds, logits);
            context.Evaluate([c.GeneratedIds[0]], logits);
            return logits;
        }
        Assert.Equal(Run(1), Run(3));
    }

    [SharedFact]
    public void DecodeLoopAllocatesNothing()
    {
        var c = StoriesReferences.Cases[0];
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2 });
        var sampler = new Kiln.Inference.Sampling.Sampler(new Kiln.Inference.Sampling.SamplerOptions { Seed = 7 }, model.Config.VocabSize);
        var logits = new float[model.Config.VocabSize];
        int[] token = [0];
        context.Evaluate(c.PromptIds, logits);
        // Warm-up past tiered compilation's call-count threshold so its one-time work is not measured.
        for (int i = 0; i < 40; i++)
        {
            token[0] = sampler.Sample(logits);
            context.Evaluate(token, logits);
        }
        Thread.Sleep(300);
        context.Truncate(c.PromptIds.Length);
        context.Evaluate([c.GeneratedIds[0]], logits);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++)
        {
            token[0] = sampler.Sample(logits);
            sampler.Accept(token[0]);
            context.Evaluate(token, logits);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
    }

    private sealed class NullSink : Kiln.Inference.Generation.ITextSink
    {
        public int Chars;
        public void OnToken(int token, ReadOnlySpan<char> text) => Chars += text.Length;
        public void OnFinalText(ReadOnlySpan<char> text) => Chars += text.Length;
    }

    /// <summary>
    /// The whole generation loop (forward pass, sampler, streaming UTF-8 decoder, stop-string matcher)
    /// allocates nothing per token: 60 tokens cost exactly what 10 do (set-up only).
    /// </summary>
    [SharedFact]
    public void GenerationLoopAllocatesNothingPerToken()
    {
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        var tokenizer = Kiln.Tokenizers.Tokenizer.FromGguf(model.File);
        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 128, Threads = 2 });
        var generator = new Kiln.Inference.Generation.TextGenerator(context, tokenizer);
        var prompt = StoriesReferences.Cases[0].PromptIds;
        long Cost(int tokens)
        {
            context.Reset();
            var options = new Kiln.Inference.Generation.GenerationOptions
            {
                MaxTokens = tokens,
                IgnoreEndOfSequence = true,
                StopStrings = ["never appears in a story: qqqzzz"],
                Sampler = new Kiln.Inference.Sampling.SamplerOptions { Seed = 3 },
            };
            var sink = new NullSink();
            long before = GC.GetAllocatedBytesForCurrentThread();
            var result = generator.Generate(prompt, options, sink);
            long cost = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.Equal(tokens, result.GeneratedTokens);
            Assert.True(sink.Chars > 0);
            return cost;
        }
        Cost(60);
        Cost(60);
        Thread.Sleep(300);
        Assert.Equal(Cost(10), Cost(60));
    }

    [SharedFact]
    public void APromptLongerThanTheContextIsRejected()
    {
        using var model = LlamaModel.Load(StoriesReferences.ModelPath);
        using var context = new LlamaContext(model, new LlamaContextOptions { ContextLength = 8, Threads = 1 });
        var logits = new float[model.Config.VocabSize];
        var e = Assert.Throws<Kiln.Models.ContextOverflowException>(() => context.Evaluate(new int[9], logits));
        Assert.Contains("context of 8", e.Message);
        Assert.Equal(0, context.Position);
    }
}
