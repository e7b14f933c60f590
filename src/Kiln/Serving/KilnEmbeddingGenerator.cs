using Microsoft.Extensions.AI;

namespace Kiln.Serving;

/// <summary>
/// <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over an <see cref="IInferenceEngine"/>: each text becomes the
/// engine's mean-pooled, L2-normalized final hidden state. Thread-safe; the texts of one call are embedded concurrently.
/// </summary>
public sealed class KilnEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly IInferenceEngine _engine;
    private readonly EmbeddingGeneratorMetadata _metadata;

    public KilnEmbeddingGenerator(IInferenceEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        _engine = engine;
        _metadata = new EmbeddingGeneratorMetadata("kiln", null, engine.ModelName, engine.EmbeddingLength);
    }

    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (options?.Dimensions is { } dimensions && dimensions != _engine.EmbeddingLength)
            throw new ArgumentException($"This model's embeddings have {_engine.EmbeddingLength} dimensions, not {dimensions}.", nameof(options));
        int[][] inputs = values.Select(v => _engine.Tokenizer.Encode(v ?? throw new ArgumentException("A value is null.", nameof(values)))).ToArray();
        foreach (int[] input in inputs)
        {
            if (input.Length > _engine.ContextLength)
                throw new ArgumentException($"A text has {input.Length} tokens, more than the context of {_engine.ContextLength}.", nameof(values));
        }
        float[][] vectors = await Task.WhenAll(inputs.Select(i => _engine.EmbedAsync(i, cancellationToken))).ConfigureAwait(false);
        DateTimeOffset now = DateTimeOffset.UtcNow;
        var result = new GeneratedEmbeddings<Embedding<float>>(vectors.Select(v => new Embedding<float>(v) { ModelId = _engine.ModelName, CreatedAt = now }))
        {
            Usage = new UsageDetails { InputTokenCount = inputs.Sum(i => i.Length), TotalTokenCount = inputs.Sum(i => i.Length) },
        };
        return result;
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata))
            return _metadata;
        if (serviceType.IsInstanceOfType(this))
            return this;
        return serviceType.IsInstanceOfType(_engine) ? _engine : null;
    }

    /// <summary>The engine belongs to the caller, who disposes it.</summary>
    public void Dispose()
    {
    }
}
