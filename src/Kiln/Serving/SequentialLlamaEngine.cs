using System.Runtime.CompilerServices;
using Kiln.Inference.Sampling;
using Kiln.Models.Llama;
using Kiln.Tokenizers;

namespace Kiln.Serving;

/// <summary>
/// A stopgap <see cref="IInferenceEngine"/> over one <see cref="LlamaContext"/>: requests run one at a time in
/// arrival order (no batching), each reusing the longest prefix it shares with the tokens already in the cache.
/// It lets the server and the in-process clients run on a real model before the batching engine exists; it has no
/// embeddings (the context does not expose hidden states) and reports no KV blocks.
/// </summary>
/// <remarks>
/// Log-probabilities are those of the logits after the constraint's mask and before the sampler's penalties.
/// </remarks>
public sealed class SequentialLlamaEngine : IInferenceEngine
{
    private readonly LlamaContext _context;
    private readonly SemaphoreSlim _turn = new(1, 1);
    private readonly List<int> _cached = [];
    private readonly int _maxWaiting;
    private int _waiting;
    private int _running;
    private long _promptTokens;
    private long _generatedTokens;
    private long _prefixQueries;
    private long _prefixHits;

    public SequentialLlamaEngine(LlamaContext context, Tokenizer tokenizer, string modelName, int maxWaiting = 64)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _context = context;
        Tokenizer = tokenizer;
        ModelName = modelName;
        _maxWaiting = maxWaiting;
    }

    public Tokenizer Tokenizer { get; }

    public string ModelName { get; }

    public int ContextLength => _context.ContextLength;

    public int EmbeddingLength => _context.Model.Config.EmbeddingLength;

    public async IAsyncEnumerable<GeneratedToken> GenerateAsync(EngineRequest request, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Prompt.Count == 0)
            throw new ArgumentException("The prompt is empty.", nameof(request));
        if (request.Prompt.Count + 1 > ContextLength)
            throw new EngineRejectedException(EngineRejection.PromptTooLong, $"The prompt has {request.Prompt.Count} tokens; the context holds {ContextLength} (prompt plus at least one generated token).");
        if (Interlocked.Increment(ref _waiting) > _maxWaiting)
        {
            Interlocked.Decrement(ref _waiting);
            throw new EngineRejectedException(EngineRejection.QueueFull, $"{_maxWaiting} requests are already waiting.");
        }
        try
        {
            await _turn.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
        Interlocked.Increment(ref _running);
        try
        {
            int vocab = Tokenizer.VocabSize;
            var sampler = new Sampler(request.Sampling, vocab);
            foreach (int token in request.Prompt)
                sampler.Accept(token);
            var logits = new float[_context.VocabSize];
            var probabilities = new float[vocab];
            await Task.Run(() => EvaluatePrompt(request.Prompt, logits), cancellationToken).ConfigureAwait(false);
            for (int i = 0; ; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                Span<float> row = logits.AsSpan(0, vocab);
                request.Constraint?.Mask(row);
                row.CopyTo(probabilities);
                int token = sampler.Sample(row);
                if (Tokenizer.IsEndOfGeneration(token) && !request.IgnoreEndOfGeneration)
                {
                    yield return new GeneratedToken(-1, 0f, [], EngineFinishReason.EndOfGeneration);
                    yield break;
                }
                sampler.Accept(token);
                request.Constraint?.Accept(token);
                Interlocked.Increment(ref _generatedTokens);
                (float logprob, TokenLogprob[] top) = LogProbabilities(probabilities, token, request.TopLogprobs);
                // A finished constrained document admits only the end token, so there is no need to compute it.
                bool complete = request.Constraint is { IsComplete: true } && !request.IgnoreEndOfGeneration;
                bool last = i + 1 >= request.MaxTokens;
                bool full = _context.Position + 1 >= ContextLength;
                EngineFinishReason? finish = complete ? EngineFinishReason.EndOfGeneration : last ? EngineFinishReason.Length : full ? EngineFinishReason.ContextFull : null;
                yield return new GeneratedToken(token, logprob, top, finish);
                if (finish is not null)
                    yield break;
                await Task.Run(() =>
                {
                    _context.Evaluate([token], logits);
                    _cached.Add(token);
                }, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _running);
            _turn.Release();
        }
    }

    public Task<float[]> EmbedAsync(IReadOnlyList<int> tokens, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("Embeddings need the batching engine; the sequential engine has none.");

    public EngineMetrics GetMetrics() => new()
    {
        RunningSequences = Volatile.Read(ref _running),
        WaitingSequences = Volatile.Read(ref _waiting),
        PromptTokens = Interlocked.Read(ref _promptTokens),
        GeneratedTokens = Interlocked.Read(ref _generatedTokens),
        PrefixCacheQueries = Interlocked.Read(ref _prefixQueries),
        PrefixCacheHits = Interlocked.Read(ref _prefixHits),
    };

    public ValueTask DisposeAsync()
    {
        _turn.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>Keeps the cached prefix the prompt shares (at least one token is evaluated, for its logits) and evaluates the rest.</summary>
    private void EvaluatePrompt(IReadOnlyList<int> prompt, float[] logits)
    {
        int common = 0;
        while (common < _cached.Count && common < prompt.Count && _cached[common] == prompt[common])
            common++;
        if (common == prompt.Count)
            common--;
        Interlocked.Add(ref _promptTokens, prompt.Count);
        Interlocked.Add(ref _prefixQueries, prompt.Count);
        Interlocked.Add(ref _prefixHits, common);
        _context.Truncate(Math.Min(common, _context.Position));
        _cached.RemoveRange(_context.Position, _cached.Count - _context.Position);
        int[] rest = prompt.Skip(_context.Position).ToArray();
        _context.Evaluate(rest, logits);
        _cached.AddRange(rest);
    }

    private static (float Logprob, TokenLogprob[] Top) LogProbabilities(float[] logits, int token, int topCount)
    {
        float max = float.NegativeInfinity;
        foreach (float v in logits)
            max = Math.Max(max, v);
        double sum = 0;
        foreach (float v in logits)
            sum += Math.Exp(v - max);
        float logSum = max + (float)Math.Log(sum);
        if (topCount <= 0)
            return (logits[token] - logSum, []);
        var top = new PriorityQueue<int, float>();
        for (int i = 0; i < logits.Length; i++)
        {
            if (top.Count < topCount)
                top.Enqueue(i, logits[i]);
            else if (logits[i] > logits[top.Peek()])
                top.EnqueueDequeue(i, logits[i]);
        }
        var list = new TokenLogprob[top.Count];
        for (int i = list.Length - 1; i >= 0; i--)
        {
            int id = top.Dequeue();
            list[i] = new TokenLogprob(id, logits[id] - logSum);
        }
        return (logits[token] - logSum, list);
    }
}
