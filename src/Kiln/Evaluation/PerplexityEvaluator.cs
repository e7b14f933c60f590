using System.Diagnostics;
using System.Numerics.Tensors;
using Kiln.Models;
using Kiln.Models.Gpt2;
using Kiln.Models.Llama;
using Kiln.Tokenizers;

namespace Kiln.Evaluation;

/// <summary>
/// Perplexity of a model on a text, computed exactly as llama.cpp's llama-perplexity does (its
/// default mode), so the figures compare with llama.cpp's: the whole text is tokenized once with
/// BOS; chunk i is tokens [n·i, n·i + n) with its first token replaced by BOS and evaluated from an
/// empty cache; only the second half of each chunk is scored (the logits at positions n/2 … n−2
/// against the next token), so every scored token has at least n/2 tokens of context. A trailing
/// partial chunk is not used.
/// </summary>
public sealed class PerplexityEvaluator : IDisposable
{
    /// <summary>The smallest chunk that scores a token (n/2 … n−2 is non-empty).</summary>
    public const int MinContextLength = 4;

    private readonly IModelContext _context;
    private readonly Tokenizer _tokenizer;
    private readonly int _contextLength;
    private readonly int _maxChunks;
    private readonly int _vocab;
    private readonly int[] _chunk;
    private readonly float[] _logits;
    private readonly float[] _shifted;

    /// <summary>
    /// Creates the evaluation context. Bad options throw <see cref="ArgumentException"/> whose message
    /// is a whole sentence for the user (no parameter name appended), as the kiln command prints it.
    /// </summary>
    public PerplexityEvaluator(LlamaModel model, Tokenizer tokenizer, PerplexityOptions? options = null)
        : this(model?.Config.ContextLength ?? throw new ArgumentNullException(nameof(model)), model.Config.VocabSize, tokenizer,
            options ?? new PerplexityOptions(), o => new LlamaContext(model, new LlamaContextOptions
            {
                ContextLength = o.ContextLength,
                MaxBatch = o.ContextLength,
                Threads = o.Threads,
                KvCacheType = o.KvCacheType,
                FlashAttention = o.FlashAttention,
            }))
    {
    }

    /// <summary>As for a Llama-family model, for a GPT-2 (whose context is at most its learned positions).</summary>
    public PerplexityEvaluator(Gpt2Model model, Tokenizer tokenizer, PerplexityOptions? options = null)
        : this(model?.Config.ContextLength ?? throw new ArgumentNullException(nameof(model)), model.Config.VocabSize, tokenizer,
            options ?? new PerplexityOptions(), o => new Gpt2Context(model, new Gpt2ContextOptions
            {
                ContextLength = o.ContextLength,
                MaxBatch = o.ContextLength,
                Threads = o.Threads,
                KvCacheType = o.KvCacheType,
                FlashAttention = o.FlashAttention,
            }))
    {
    }

    private PerplexityEvaluator(int modelContext, int vocab, Tokenizer tokenizer, PerplexityOptions options, Func<PerplexityOptions, IModelContext> createContext)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        int n = options.ContextLength;
        if (n < MinContextLength)
            throw new ArgumentException($"perplexity context {n} is too small: it must be at least {MinContextLength} tokens");
        if (n % 2 != 0)
            throw new ArgumentException($"perplexity context {n} must be even (the second half of each chunk is scored)");
        if (n > modelContext)
            throw new ArgumentException($"perplexity context {n} is larger than the model's context length {modelContext}");
        if (options.MaxChunks < 0)
            throw new ArgumentException($"chunk limit {options.MaxChunks} must not be negative (0 = all chunks)");

        _tokenizer = tokenizer;
        _contextLength = n;
        _maxChunks = options.MaxChunks;
        _vocab = vocab;
        _context = createContext(options);
        _chunk = new int[n];
        _logits = new float[(n - FirstScored) * _vocab];
        _shifted = new float[_vocab];
    }

    public int ContextLength => _contextLength;

    public int ThreadCount => _context.ThreadCount;

    /// <summary>Position of the first logit row scored in a chunk (llama.cpp's "first").</summary>
    private int FirstScored => _contextLength / 2;

    /// <summary>
    /// The tokens llama-perplexity evaluates for <paramref name="text"/>: BOS (when the vocabulary adds
    /// one) followed by the text, special-token text not parsed, and never an EOS.
    /// </summary>
    public int[] Tokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int[] body = _tokenizer.Encode(text, addSpecial: false);
        if (!_tokenizer.AddBos || _tokenizer.BosId < 0)
            return body;
        var tokens = new int[body.Length + 1];
        tokens[0] = _tokenizer.BosId;
        body.CopyTo(tokens, 1);
        return tokens;
    }

    /// <summary>Chunks an input of <paramref name="tokenCount"/> tokens gives, after the chunk limit.</summary>
    public int ChunkCount(int tokenCount)
    {
        int whole = tokenCount / _contextLength;
        return _maxChunks > 0 ? Math.Min(whole, _maxChunks) : whole;
    }

    public PerplexityResult Evaluate(string text, Action<PerplexityChunk>? onChunk = null, CancellationToken cancellation = default)
        => Evaluate(Tokenize(text), onChunk, cancellation);

    /// <summary>
    /// Scores already tokenized input (see <see cref="Tokenize"/>); <paramref name="onChunk"/> is
    /// called on this thread after each chunk. Throws <see cref="ArgumentException"/> when the input
    /// is shorter than one chunk and <see cref="OperationCanceledException"/> when cancelled.
    /// <paramref name="observer"/>, if given, sees each chunk's scored logits before <paramref name="onChunk"/> runs.
    /// </summary>
    public PerplexityResult Evaluate(ReadOnlySpan<int> tokens, Action<PerplexityChunk>? onChunk = null, CancellationToken cancellation = default,
        IScoredLogitsObserver? observer = null)
    {
        int n = _contextLength;
        if (tokens.Length < n)
            throw new ArgumentException(
                $"the text is {tokens.Length} tokens long, but perplexity with a context of {n} needs at least {n} tokens (one chunk)");

        int chunks = ChunkCount(tokens.Length);
        int first = FirstScored;
        int scoredPerChunk = n - first - 1;
        bool replaceFirst = _tokenizer.AddBos && _tokenizer.BosId >= 0;
        var running = new double[chunks];
        double nll = 0, nll2 = 0;
        long count = 0;
        var clock = Stopwatch.StartNew();

        for (int c = 0; c < chunks; c++)
        {
            cancellation.ThrowIfCancellationRequested();
            tokens.Slice(c * n, n).CopyTo(_chunk);
            if (replaceFirst)
                _chunk[0] = _tokenizer.BosId;

            // llama.cpp asks for logits only at positions ≥ first; evaluating the first half without
            // them gives the same numbers (each row is computed independently of the batch split).
            _context.Reset();
            _context.Evaluate(_chunk.AsSpan(0, first), _shifted);
            _context.Evaluate(_chunk.AsSpan(first), _logits, allLogits: true);

            for (int j = 0; j < scoredPerChunk; j++)
            {
                double v = NegativeLogLikelihood(_logits.AsSpan(j * _vocab, _vocab), _chunk[first + j + 1]);
                nll += v;
                nll2 += v * v;
            }
            count += scoredPerChunk;
            observer?.OnChunk(c, _logits.AsSpan(0, scoredPerChunk * _vocab), _chunk.AsSpan(first + 1, scoredPerChunk), _vocab);
            running[c] = Math.Exp(nll / count);
            onChunk?.Invoke(new PerplexityChunk(c + 1, chunks, running[c]));
        }

        double mean = nll / count;
        double ppl = Math.Exp(mean);
        // llama.cpp's error estimate: the standard error of the mean NLL, carried to the perplexity.
        double variance = nll2 / count - mean * mean;
        double uncertainty = count > 1 ? ppl * Math.Sqrt(Math.Max(variance, 0) / (count - 1)) : double.NaN;
        return new PerplexityResult(ppl, uncertainty, mean, n, tokens.Length, checked((int)count), running, clock.Elapsed);
    }

    /// <summary>
    /// −log softmax(logits)[target] as llama.cpp's log_softmax: float max and float exponentials,
    /// summed in double; the result is a double.
    /// </summary>
    private double NegativeLogLikelihood(ReadOnlySpan<float> logits, int target)
    {
        float max = TensorPrimitives.Max(logits);
        var shifted = _shifted.AsSpan(0, logits.Length);
        TensorPrimitives.Subtract(logits, max, shifted);
        TensorPrimitives.Exp(shifted, shifted);
        double sum = 0;
        foreach (float e in shifted)
            sum += e;
        return Math.Log(sum) - (logits[target] - max);
    }

    public void Dispose() => _context.Dispose();
}
