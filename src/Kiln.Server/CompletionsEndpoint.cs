using System.Text;
using System.Text.Json;
using Kiln.Serving;
using Microsoft.AspNetCore.Http;

namespace Kiln.Server;

/// <summary>POST /v1/completions (the legacy text completion API).</summary>
internal static class CompletionsEndpoint
{
    public const int MaxLogprobs = 5;

    public static async Task HandleAsync(HttpContext context, ServedModel model, RequestTrace trace, CancellationToken cancellationToken)
    {
        using RequestBody body = await RequestBody.ReadAsync(context.Request, cancellationToken).ConfigureAwait(false);
        ModelsEndpoint.CheckModel(body, model);
        IInferenceEngine engine = model.Engine;
        var prompts = PromptInput.Read(body, "prompt", engine.Tokenizer, addSpecial: true);
        bool echo = body.Bool("echo") ?? false;
        int? logprobs = (int?)body.Integer("logprobs", 0, MaxLogprobs);
        _ = body.String("user");
        trace.PromptTokens = prompts.Sum(p => p.Ids.Length);
        var parameters = GenerationParameters.Read(body, engine.ContextLength, prompts.Max(p => p.Ids.Length));
        int n = parameters.Choices;
        var requests = prompts.SelectMany(p => Enumerable.Range(0, n).Select(i => parameters.ToRequest(p.Ids, parameters.Stop, i, logprobs ?? 0))).ToArray();
        string id = trace.Id = "cmpl-" + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string PromptText(int choice) => prompts[choice / n].Text ?? engine.Tokenizer.Decode(prompts[choice / n].Ids);

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
                Header(w, id, created, engine.ModelName);
                w.WriteStartArray("choices");
                for (int i = 0; i < requests.Length; i++)
                {
                    string prefix = echo ? PromptText(i) : "";
                    w.WriteStartObject();
                    w.WriteString("text", prefix + text[i]);
                    w.WriteNumber("index", i);
                    if (logprobs is { } top)
                        JsonResponses.CompletionLogprobs(w, engine.Tokenizer, tokens[i], top, prefix.Length);
                    else
                        w.WriteNull("logprobs");
                    w.WriteString("finish_reason", JsonResponses.FinishReason(finish[i]));
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                JsonResponses.Usage(w, trace.PromptTokens, tokens.Sum(t => t.Count));
                w.WriteEndObject();
            }, cancellationToken).ConfigureAwait(false);
            return;
        }

        await using var chunks = ChoiceStreams.MergeAsync(engine, requests, cancellationToken).GetAsyncEnumerator(cancellationToken);
        bool more = await chunks.MoveNextAsync().ConfigureAwait(false);
        HttpResponse response = context.Response;
        JsonResponses.StartEvents(response);
        if (echo)
        {
            for (int i = 0; i < requests.Length; i++)
                await JsonResponses.WriteEventAsync(response, Chunk(id, created, engine, i, PromptText(i), null, null, 0, 0, parameters.IncludeUsage), cancellationToken).ConfigureAwait(false);
        }
        int completionTokens = 0;
        var offsets = new int[requests.Length];
        while (more)
        {
            var (index, chunk) = chunks.Current;
            trace.TokensArrived(chunk.Tokens.Count);
            completionTokens += chunk.Tokens.Count;
            string? finish = chunk.FinishReason is { } reason ? JsonResponses.FinishReason(reason) : null;
            if (chunk.Text.Length > 0 || finish is not null || (logprobs is not null && chunk.Tokens.Count > 0))
                await JsonResponses.WriteEventAsync(response, Chunk(id, created, engine, index, chunk.Text, logprobs is null ? null : chunk.Tokens, finish, logprobs ?? 0, offsets[index], parameters.IncludeUsage), cancellationToken).ConfigureAwait(false);
            offsets[index] += chunk.Text.Length;
            more = await chunks.MoveNextAsync().ConfigureAwait(false);
        }
        if (parameters.IncludeUsage)
        {
            byte[] usage = JsonResponses.Build(w =>
            {
                Header(w, id, created, engine.ModelName);
                w.WriteStartArray("choices");
                w.WriteEndArray();
                JsonResponses.Usage(w, trace.PromptTokens, completionTokens);
                w.WriteEndObject();
            });
            await JsonResponses.WriteEventAsync(response, usage, cancellationToken).ConfigureAwait(false);
        }
        await JsonResponses.WriteDoneAsync(response, cancellationToken).ConfigureAwait(false);
    }

    private static byte[] Chunk(string id, long created, IInferenceEngine engine, int index, string text, IReadOnlyList<GeneratedToken>? tokens,
        string? finish, int top, int offset, bool includeUsage) => JsonResponses.Build(w =>
    {
        Header(w, id, created, engine.ModelName);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteString("text", text);
        w.WriteNumber("index", index);
        if (tokens is not null)
            JsonResponses.CompletionLogprobs(w, engine.Tokenizer, tokens, top, offset);
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

    private static void Header(Utf8JsonWriter w, string id, long created, string model)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", "text_completion");
        w.WriteNumber("created", created);
        w.WriteString("model", model);
        w.WriteString("system_fingerprint", "kiln");
    }
}
