using System.Globalization;
using Kiln.Evaluation;
using Kiln.Models.Llama;
using Kiln.Tokenizers;

namespace Kiln.Tests.Evaluation;

/// <summary>How far Kiln's perplexity run on a reference's model and text is from llama.cpp's.</summary>
internal sealed record PerplexityAgreement(
    PerplexityReference Reference,
    PerplexityResult Result,
    int TokenCount,
    double PerplexityRelativeDifference,
    double UncertaintyRelativeDifference,
    double WorstChunkRelativeDifference,
    int WorstChunk,
    int ChunksPrintedIdentically)
{
    public static PerplexityAgreement Measure(PerplexityReference reference)
    {
        using var model = LlamaModel.Load(reference.ModelPath);
        using var evaluator = new PerplexityEvaluator(model, Tokenizer.FromGguf(model.File),
            new PerplexityOptions { ContextLength = PerplexityReference.ContextLength, Threads = 2 });
        int[] tokens = evaluator.Tokenize(File.ReadAllText(PerplexityReference.TextPath));
        var result = evaluator.Evaluate(tokens);

        double worst = 0;
        int worstChunk = 0, identical = 0;
        int chunks = Math.Min(result.Chunks, reference.Chunks);
        for (int i = 1; i <= chunks; i++)
        {
            double ours = result.RunningPerplexities[i - 1];
            double diff = Math.Abs(ours - reference.RunningValue(i)) / reference.RunningValue(i);
            if (diff > worst)
                (worst, worstChunk) = (diff, i);
            if (reference.PrintedChunks[i - 1] == string.Create(CultureInfo.InvariantCulture, $"[{i}]{ours:F4}"))
                identical++;
        }
        return new PerplexityAgreement(
            reference, result, tokens.Length,
            Math.Abs(result.Perplexity - reference.Perplexity) / reference.Perplexity,
            Math.Abs(result.Uncertainty - reference.Uncertainty) / reference.Uncertainty,
            worst, worstChunk, identical);
    }

    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Path.GetFileName(Reference.ModelPath)}: PPL {Result.Perplexity:F6} +/- {Result.Uncertainty:F6} vs llama.cpp {Reference.Perplexity:F4} +/- {Reference.Uncertainty:F5}; " +
        $"relative difference {PerplexityRelativeDifference:E2} (error estimate {UncertaintyRelativeDifference:E2}); " +
        $"running values: {ChunksPrintedIdentically}/{Reference.Chunks} printed identically, worst relative difference {WorstChunkRelativeDifference:E2} at chunk {WorstChunk}; " +
        $"{Result.Elapsed.TotalSeconds:F2} s");
}
