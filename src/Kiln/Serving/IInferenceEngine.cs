using Kiln.Tokenizers;

namespace Kiln.Serving;

/// <summary>
/// What a front end (the HTTP server, the in-process <c>IChatClient</c>, <c>kiln loadtest</c>'s tests) needs from
/// the serving engine: token-level generation for many concurrent sequences, embeddings, and live counters.
/// Text concerns (chat templates, stop strings, detokenization, JSON formatting) stay in the front end, so the
/// engine deals in token ids only and stays testable without HTTP.
/// </summary>
/// <remarks>
/// Thread-safe: any number of callers may enumerate <see cref="GenerateAsync"/> at once; the engine batches
/// them (continuous batching). Ending an enumeration early (break, dispose, or the cancellation token) aborts
/// the sequence at the engine's next step and frees its KV blocks at once, whether it was queued, in prefill
/// or decoding.
/// </remarks>
public interface IInferenceEngine : IAsyncDisposable
{
    /// <summary>The model's tokenizer.</summary>
    Tokenizer Tokenizer { get; }

    /// <summary>Name the engine serves the model under (the <c>model</c> field of OpenAI requests).</summary>
    string ModelName { get; }

    /// <summary>Longest sequence (prompt + generated tokens) one request may reach.</summary>
    int ContextLength { get; }

    /// <summary>Length of the vectors <see cref="EmbedAsync"/> returns.</summary>
    int EmbeddingLength { get; }

    /// <summary>
    /// Streams the tokens generated for one sequence. The last item has <see cref="GeneratedToken.FinishReason"/>
    /// set (it may carry no token when the reason is <see cref="EngineFinishReason.Cancelled"/>).
    /// Throws <see cref="EngineRejectedException"/> (before any item) when the request cannot be admitted:
    /// prompt longer than the context, or the waiting queue is full.
    /// </summary>
    IAsyncEnumerable<GeneratedToken> GenerateAsync(EngineRequest request, CancellationToken cancellationToken = default);

    /// <summary>Mean of the final (normed) hidden states over the tokens, L2-normalized.</summary>
    Task<float[]> EmbedAsync(IReadOnlyList<int> tokens, CancellationToken cancellationToken = default);

    /// <summary>A consistent snapshot of the engine's counters (for <c>/metrics</c>).</summary>
    EngineMetrics GetMetrics();
}
