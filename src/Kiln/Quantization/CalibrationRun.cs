using Kiln.Models.Llama;
using Kiln.Tokenizers;

namespace Kiln.Quantization;

/// <summary>
/// Feeds calibration text through a model for an <see cref="IMatMulInputObserver"/>, as llama-imatrix does:
/// the text tokenized once (BOS first when the vocabulary adds one), cut into chunks of the context length,
/// each chunk's first token replaced by BOS, each chunk evaluated from an empty cache.
/// </summary>
public static class CalibrationRun
{
    /// <summary>Returns the number of chunks evaluated; ArgumentException when the text is shorter than one chunk.</summary>
    public static int Run(LlamaModel model, Tokenizer tokenizer, string text, int contextLength, int maxChunks, int threads,
        IMatMulInputObserver observer, Action<int, int>? onChunk = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(observer);
        if (contextLength < 2 || contextLength > model.Config.ContextLength)
            throw new ArgumentException($"calibration context {contextLength} must be between 2 and the model's context length {model.Config.ContextLength}");
        bool bos = tokenizer.AddBos && tokenizer.BosId >= 0;
        int[] body = tokenizer.Encode(text, addSpecial: false);
        int[] tokens = bos ? [tokenizer.BosId, .. body] : body;
        int chunks = tokens.Length / contextLength;
        if (maxChunks > 0)
            chunks = Math.Min(chunks, maxChunks);
        if (chunks == 0)
            throw new ArgumentException($"the calibration text is {tokens.Length} tokens long; a context of {contextLength} needs at least {contextLength}");

        using var context = new LlamaContext(model, new LlamaContextOptions
        {
            ContextLength = contextLength,
            MaxBatch = contextLength,
            Threads = threads,
        });
        context.MatMulInputObserver = observer;
        var logits = new float[model.Config.VocabSize];
        var chunk = new int[contextLength];
        for (int c = 0; c < chunks; c++)
        {
            tokens.AsSpan(c * contextLength, contextLength).CopyTo(chunk);
            if (bos)
                chunk[0] = tokenizer.BosId;
            context.Reset();
            context.Evaluate(chunk, logits);
            onChunk?.Invoke(c + 1, chunks);
        }
        return chunks;
    }
}
