using System.Text;
using System.Text.Json;
using Kiln.Inference.Chat;
using Kiln.Serving;
using Microsoft.AspNetCore.Http;

namespace Kiln.Server;

/// <summary>POST /v1/chat/completions.</summary>
internal static class ChatCompletionsEndpoint
{
    public const int MaxTopLogprobs = 20;

    public static async Task HandleAsync(HttpContext context, ServedModel model, RequestTrace trace, CancellationToken cancellationToken)
    {
        using RequestBody body = await RequestBody.ReadAsync(context.Request, cancellationToken).ConfigureAwait(false);
        ModelsEndpoint.CheckModel(body, model);
        List<ChatMessage> messages = ReadMessages(body);
        _ = body.String("user");
        bool logprobs = body.Bool("logprobs") ?? false;
        int top = (int)(body.Integer("top_logprobs", 0, MaxTopLogprobs) ?? 0);
        if (top > 0 && !logprobs)
            throw ApiException.BadField("top_logprobs", "requires 'logprobs' to be true.");

        IInferenceEngine engine = model.Engine;
        int[] prompt = model.ChatPrompt.Encode(messages);
        trace.PromptTokens = prompt.Length;
        var parameters = GenerationParameters.Read(body, engine.ContextLength, prompt.Length);
        IReadOnlyList<string> stop = model.ChatPrompt.StopStrings(parameters.Stop);
        var requests = Enumerable.Range(0, parameters.Choices).Select(i => parameters.ToRequest(prompt, stop, i, top)).ToArray();
        string id = trace.Id = "chatcmpl-" + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        if (!parameters.Stream)
        {
            var text = requests.Select(_ => new StringBuilder()).ToArray();
            var tokens = requests.Select(_ => new List<GeneratedToken>()).ToArray();
            var finish = new TextFinishReason[requests.Length];
            await foreach (var (index, chunk) in ChoiceStreams.MergeAsync(engine, requests, cancellationToken).ConfigureAwait(false))
            {
                trace.TokensArrived(chunk.Tokens.Count);
                text[index].Append(chunk.Text);
                tokens[index].AddRange(chunk.Tokens);
                if (chunk.FinishReason is { } reason)
                    finish[index] = reason;
            }
            await JsonResponses.WriteAsync(context.Response, 200, w =>
            {
                Header(w, id, created, engine.ModelName, "chat.completion");
                w.WriteStartArray("choices");
                for (int i = 0; i < requests.Length; i++)
                {
                    w.WriteStartObject();
                    w.WriteNumber("index", i);
                    w.WriteStartObject("message");
                    w.WriteString("role", "assistant");
                    w.WriteString("content", text[i].ToString());
                    w.WriteNull("refusal");
                    w.WriteEndObject();
                    if (logprobs)
                        JsonResponses.ChatLogprobs(w, engine.Tokenizer, tokens[i], top);
                    else
                        w.WriteNull("logprobs");
                    w.WriteString("finish_reason", JsonResponses.FinishReason(finish[i]));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                JsonResponses.Usage(w, prompt.Length, tokens.Sum(t => t.Count));
                w.WriteEndObject();
            }, cancellationToken).ConfigureAwait(false);
            return;
        }

        await using var chunks = ChoiceStreams.MergeAsync(engine, requests, cancellationToken).GetAsyncEnumerator(cancellationToken);
        // The first chunk comes before any byte is sent, so an engine refusal still becomes a proper status code.
        bool more = await chunks.MoveNextAsync().ConfigureAwait(false);
        HttpResponse response = context.Response;
        JsonResponses.StartEvents(response);
        for (int i = 0; i < requests.Length; i++)
            await JsonResponses.WriteEventAsync(response, Chunk(id, created, engine, i, "", null, null, 0, role: true, parameters.IncludeUsage), cancellationToken).ConfigureAwait(false);
        int completionTokens = 0;
        while (more)
        {
            var (index, chunk) = chunks.Current;
            trace.TokensArrived(chunk.Tokens.Count);
            completionTokens += chunk.Tokens.Count;
            if (chunk.Text.Length > 0 || (logprobs && chunk.Tokens.Count > 0))
                await JsonResponses.WriteEventAsync(response, Chunk(id, created, engine, index, chunk.Text, logprobs ? chunk.Tokens : null, null, top, role: false, parameters.IncludeUsage), cancellationToken).ConfigureAwait(false);
            if (chunk.FinishReason is { } reason)
                await JsonResponses.WriteEventAsync(response, Chunk(id, created, engine, index, null, null, JsonResponses.FinishReason(reason), 0, role: false, parameters.IncludeUsage), cancellationToken).ConfigureAwait(false);
            more = await chunks.MoveNextAsync().ConfigureAwait(false);
        }
        if (parameters.IncludeUsage)
        {
            byte[] usage = JsonResponses.Build(w =>
            {
                Header(w, id, created, engine.ModelName, "chat.completion.chunk");
                w.WriteStartArray("choices");
                w.WriteEndArray();
                JsonResponses.Usage(w, prompt.Length, completionTokens);
                w.WriteEndObject();
            });
            await JsonResponses.WriteEventAsync(response, usage, cancellationToken).ConfigureAwait(false);
        }
        await JsonResponses.WriteDoneAsync(response, cancellationToken).ConfigureAwait(false);
    }

    private static byte[] Chunk(string id, long created, IInferenceEngine engine, int index, string? content, IReadOnlyList<GeneratedToken>? tokens,
        string? finish, int top, bool role, bool includeUsage) => JsonResponses.Build(w =>
    {
        Header(w, id, created, engine.ModelName, "chat.completion.chunk");
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", index);
        w.WriteStartObject("delta");
        if (role)
            w.WriteString("role", "assistant");
        if (content is not null)
            w.WriteString("content", content);
        w.WriteEndObject();
        if (tokens is not null)
            JsonResponses.ChatLogprobs(w, engine.Tokenizer, tokens, top);
        else
            w.WriteNull("logprobs");
        if (finish is null)
            w.WriteNull("finish_reason");
        else
            w.WriteString("finish_reason", finish);
        w.WriteEndObject();
        w.WriteEndArray();
        if (includeUsage)
            w.WriteNull("usage");
        w.WriteEndObject();
    });

    private static void Header(Utf8JsonWriter w, string id, long created, string model, string kind)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", kind);
        w.WriteNumber("created", created);
        w.WriteString("model", model);
        w.WriteString("system_fingerprint", "kiln");
    }

    private static List<ChatMessage> ReadMessages(RequestBody body)
    {
        if (body.Get("messages") is not { } messages)
            throw new ApiException(400, "'messages' is required.", param: "messages", code: "missing_required_parameter");
        if (messages.ValueKind != JsonValueKind.Array)
            throw ApiException.BadField("messages", "expected an array of messages.");
        if (messages.GetArrayLength() == 0)
            throw ApiException.BadField("messages", "must contain at least one message.");
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (JsonElement message in messages.EnumerateArray())
        {
            string field = $"messages[{i++}]";
            if (message.ValueKind != JsonValueKind.Object)
                throw ApiException.BadField(field, "expected an object.");
            string? role = message.TryGetProperty("role", out JsonElement r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
            role = role switch
            {
                "system" or "developer" => ChatMessage.System,
                "user" => ChatMessage.User,
                "assistant" => ChatMessage.Assistant,
                null => throw ApiException.BadField(field + ".role", "expected a string."),
                _ => throw ApiException.BadField(field + ".role", $"role '{role}' is not supported (system, developer, user, assistant)."),
            };
            list.Add(new ChatMessage(role, ReadContent(message, field + ".content")));
        }
        return list;
    }

    private static string ReadContent(JsonElement message, string field)
    {
        if (!message.TryGetProperty("content", out JsonElement content) || content.ValueKind == JsonValueKind.Null)
            return "";
        if (content.ValueKind == JsonValueKind.String)
            return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array)
            throw ApiException.BadField(field, "expected a string or an array of content parts.");
        var text = new StringBuilder();
        foreach (JsonElement part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out JsonElement type) || type.GetString() != "text"
                || !part.TryGetProperty("text", out JsonElement partText) || partText.ValueKind != JsonValueKind.String)
                throw ApiException.BadField(field, "only text content parts ({\"type\":\"text\",\"text\":...}) are supported.");
            text.Append(partText.GetString());
        }
        return text.ToString();
    }
}
