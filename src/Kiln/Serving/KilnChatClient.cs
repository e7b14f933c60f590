using System.Runtime.CompilerServices;
using Kiln.Inference.Chat;
using Kiln.Serving.Constraints;
using Microsoft.Extensions.AI;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using KilnChatMessage = Kiln.Inference.Chat.ChatMessage;

namespace Kiln.Serving;

/// <summary>
/// <see cref="IChatClient"/> over an <see cref="IInferenceEngine"/>, in process: conversations are rendered with the
/// model's chat template and generated through the same <see cref="TextCompletion"/> path as the HTTP server (same
/// stop handling, same constrained decoding for JSON response formats). Thread-safe: calls may overlap, the engine
/// batches them. Honours <see cref="ChatOptions"/> temperature, top-p, top-k, max output tokens, stop sequences,
/// seed, frequency/presence penalties and response format; tools are not supported and are refused.
/// </summary>
public sealed class KilnChatClient : IChatClient
{
    private readonly IInferenceEngine _engine;
    private readonly ChatPromptEncoder _prompt;
    private readonly ChatClientMetadata _metadata;

    /// <param name="defaultMaxOutputTokens">Used when <see cref="ChatOptions.MaxOutputTokens"/> is not set.</param>
    public KilnChatClient(IInferenceEngine engine, ChatTemplate template, int defaultMaxOutputTokens = 512)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(template);
        _engine = engine;
        _prompt = new ChatPromptEncoder(engine.Tokenizer, template);
        DefaultMaxOutputTokens = defaultMaxOutputTokens;
        _metadata = new ChatClientMetadata("kiln", null, engine.ModelName);
    }

    public int DefaultMaxOutputTokens { get; }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        (TextCompletionRequest request, int promptTokens) = Translate(messages, options);
        TextCompletionResult result = await TextCompletion.CompleteAsync(_engine, request, cancellationToken).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        return new ChatResponse(new AiChatMessage(ChatRole.Assistant, result.Text))
        {
            ResponseId = NewId(),
            ModelId = _engine.ModelName,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Map(result.FinishReason),
            Usage = new UsageDetails { InputTokenCount = promptTokens, OutputTokenCount = result.TokenCount, TotalTokenCount = promptTokens + result.TokenCount },
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        (TextCompletionRequest request, int promptTokens) = Translate(messages, options);
        string id = NewId();
        int generated = 0;
        await foreach (TextCompletionChunk chunk in TextCompletion.StreamAsync(_engine, request, cancellationToken).ConfigureAwait(false))
        {
            generated += chunk.Tokens.Count;
            if (chunk.Text.Length > 0)
                yield return new ChatResponseUpdate(ChatRole.Assistant, chunk.Text) { ResponseId = id, MessageId = id, ModelId = _engine.ModelName };
            if (chunk.FinishReason is { } finish)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var usage = new UsageContent(new UsageDetails { InputTokenCount = promptTokens, OutputTokenCount = generated, TotalTokenCount = promptTokens + generated });
                yield return new ChatResponseUpdate(ChatRole.Assistant, [usage]) { ResponseId = id, MessageId = id, ModelId = _engine.ModelName, FinishReason = Map(finish) };
            }
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
            return null;
        if (serviceType == typeof(ChatClientMetadata))
            return _metadata;
        if (serviceType.IsInstanceOfType(this))
            return this;
        if (serviceType.IsInstanceOfType(_engine))
            return _engine;
        return null;
    }

    /// <summary>The engine belongs to the caller, who disposes it.</summary>
    public void Dispose()
    {
    }

    private (TextCompletionRequest Request, int PromptTokens) Translate(IEnumerable<AiChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (options?.Tools is { Count: > 0 })
            throw new NotSupportedException("KilnChatClient does not support tools.");
        var conversation = new List<KilnChatMessage>();
        if (!string.IsNullOrEmpty(options?.Instructions))
            conversation.Add(new KilnChatMessage(KilnChatMessage.System, options.Instructions));
        foreach (AiChatMessage message in messages)
        {
            string role = message.Role == ChatRole.System ? KilnChatMessage.System
                : message.Role == ChatRole.User ? KilnChatMessage.User
                : message.Role == ChatRole.Assistant ? KilnChatMessage.Assistant
                : throw new NotSupportedException($"Chat role '{message.Role}' is not supported (system, user, assistant).");
            conversation.Add(new KilnChatMessage(role, message.Text));
        }
        if (conversation.Count == 0)
            throw new ArgumentException("There are no messages.", nameof(messages));
        if (options?.ModelId is { Length: > 0 } model && model != _engine.ModelName)
            throw new ArgumentException($"This client serves '{_engine.ModelName}', not '{model}'.", nameof(options));

        int[] prompt = _prompt.Encode(conversation);
        int room = Math.Max(1, _engine.ContextLength - prompt.Length);
        int maxTokens = options?.MaxOutputTokens ?? DefaultMaxOutputTokens;
        if (maxTokens < 1)
            throw new ArgumentOutOfRangeException(nameof(options), maxTokens, "MaxOutputTokens must be at least 1.");
        var request = new TextCompletionRequest
        {
            Prompt = prompt,
            Sampling = OpenAiSampling.Create(options?.Temperature, options?.TopP, options?.TopK, null,
                options?.PresencePenalty, options?.FrequencyPenalty, null, options?.Seed, _engine.ContextLength),
            MaxTokens = Math.Min(maxTokens, room),
            StopStrings = _prompt.StopStrings(options?.StopSequences ?? []),
            JsonSchema = options?.ResponseFormat switch
            {
                ChatResponseFormatJson { Schema: { } schema } => JsonSchemaCompiler.Compile(schema),
                ChatResponseFormatJson => JsonSchemaNode.AnyObject,
                _ => null,
            },
        };
        return (request, prompt.Length);
    }

    private static ChatFinishReason Map(TextFinishReason reason) => reason == TextFinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static string NewId() => "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];
}
