using System.Diagnostics;
using Kiln.Inference.Sampling;
using Kiln.Models.Llama;

namespace Kiln.Benchmarking;

/// <summary>
/// llama-bench's measurements on a <see cref="LlamaContext"/>. Token ids are random (speed does not depend
/// on them, and no tokenizer is needed); each test starts from an empty context, runs once to warm up
/// (page faults, JIT tiering), then <c>repetitions</c> timed times.
/// </summary>
public static class InferenceBenchmark
{
    /// <summary>Evaluates <paramref name="tokens"/> random tokens as one prompt (in batches of the context's MaxBatch); logits of the last only.</summary>
    public static InferenceMeasurement MeasurePrompt(LlamaContext context, int tokens, int repetitions, ulong seed = 1)
    {
        Check(context, tokens, repetitions);
        int[] ids = RandomTokens(context.VocabSize, tokens, seed);
        var logits = new float[context.VocabSize];
        var rates = new double[repetitions];
        for (int r = -1; r < repetitions; r++)
        {
            context.Reset();
            long start = Stopwatch.GetTimestamp();
            context.Evaluate(ids, logits);
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (r >= 0)
                rates[r] = tokens / seconds;
        }
        return new InferenceMeasurement(InferenceTestKind.PromptProcessing, tokens, rates);
    }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> tokens one at a time from an empty context, starting with
    /// <paramref name="firstToken"/> (BOS, as llama-bench does) and continuing with random tokens.
    /// </summary>
    public static InferenceMeasurement MeasureGeneration(LlamaContext context, int tokens, int repetitions, int firstToken, ulong seed = 2)
    {
        Check(context, tokens, repetitions);
        if ((uint)firstToken >= (uint)context.VocabSize)
            throw new ArgumentOutOfRangeException(nameof(firstToken), firstToken, $"outside the vocabulary of {context.VocabSize}");
        int[] ids = RandomTokens(context.VocabSize, tokens, seed);
        ids[0] = firstToken;
        var logits = new float[context.VocabSize];
        var rates = new double[repetitions];
        for (int r = -1; r < repetitions; r++)
        {
            context.Reset();
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < ids.Length; i++)
                context.Evaluate(ids.AsSpan(i, 1), logits);
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (r >= 0)
                rates[r] = tokens / seconds;
        }
        return new InferenceMeasurement(InferenceTestKind.TextGeneration, tokens, rates);
    }

    private static void Check(LlamaContext context, int tokens, int repetitions)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (tokens < 1 || tokens > context.ContextLength)
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"1 to the context length {context.ContextLength}");
        if (repetitions < 1)
            throw new ArgumentOutOfRangeException(nameof(repetitions), repetitions, "at least one repetition");
    }

    private static int[] RandomTokens(int vocab, int count, ulong seed)
    {
        var rng = new Xoshiro256StarStar(seed);
        var ids = new int[count];
        for (int i = 0; i < count; i++)
            ids[i] = (int)(rng.NextUInt64() % (ulong)vocab);
        return ids;
    }
}
