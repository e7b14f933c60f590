using System.Buffers;
using System.Text;
using System.Text.Json;
using Kiln.Serving;
using Kiln.Tokenizers;
using Microsoft.AspNetCore.Http;

namespace Kiln.Server;

/// <summary>Writes JSON bodies, OpenAI error objects, server-sent events and the per-token log-probability shapes.</summary>
internal static class JsonResponses
{
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static byte[] Build(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
            write(writer);
        return buffer.WrittenSpan.ToArray();
    }

    public static async Task WriteAsync(HttpResponse response, int status, Action<Utf8JsonWriter> write, CancellationToken cancellationToken)
    {
        byte[] body = Build(write);
        response.StatusCode = status;
        response.ContentType = "application/json";
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, cancellationToken).ConfigureAwait(false);
    }

    public static void Error(Utf8JsonWriter w, string message, string type, string? param, string? code)
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", message);
        w.WriteString("type", type);
        if (param is null)
            w.WriteNull("param");
        else
            w.WriteString("param", param);
        if (code is null)
            w.WriteNull("code");
        else
            w.WriteString("code", code);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    public static Task WriteErrorAsync(HttpResponse response, ApiException error, CancellationToken cancellationToken)
    {
        if (error.RetryAfterSeconds is { } seconds)
            response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return WriteAsync(response, error.Status, w => Error(w, error.Message, error.Type, error.Param, error.Code), cancellationToken);
    }

    public static void StartEvents(HttpResponse response)
    {
        response.StatusCode = 200;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
    }

    public static async Task WriteEventAsync(HttpResponse response, byte[] json, CancellationToken cancellationToken)
    {
        await response.Body.WriteAsync("data: "u8.ToArray(), cancellationToken).ConfigureAwait(false);
        await response.Body.WriteAsync(json, cancellationToken).ConfigureAwait(false);
        await response.Body.WriteAsync("\n\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public static async Task WriteDoneAsync(HttpResponse response, CancellationToken cancellationToken)
    {
        await response.Body.WriteAsync("data: [DONE]\n\n"u8.ToArray(), cancellationToken).ConfigureAwait(false);
        await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    public static string FinishReason(TextFinishReason reason) => reason == TextFinishReason.Length ? "length" : "stop";

    public static void Usage(Utf8JsonWriter w, int prompt, int completion)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", prompt);
        w.WriteNumber("completion_tokens", completion);
        w.WriteNumber("total_tokens", prompt + completion);
        w.WriteEndObject();
    }

    /// <summary>Chat's <c>logprobs</c> object: <c>{"content":[{token, logprob, bytes, top_logprobs}]}</c>.</summary>
    public static void ChatLogprobs(Utf8JsonWriter w, Tokenizer tokenizer, IEnumerable<GeneratedToken> tokens, int top)
    {
        w.WriteStartObject("logprobs");
        w.WriteStartArray("content");
        foreach (GeneratedToken token in tokens)
        {
            w.WriteStartObject();
            TokenEntry(w, tokenizer, token.Token, token.Logprob);
            w.WriteStartArray("top_logprobs");
            foreach (TokenLogprob alternative in token.TopLogprobs.Take(top))
            {
                w.WriteStartObject();
                TokenEntry(w, tokenizer, alternative.Token, alternative.Logprob);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("refusal");
        w.WriteEndObject();
    }

    /// <summary>Legacy completions' <c>logprobs</c>: parallel arrays of tokens, their log-probabilities, alternatives and text offsets.</summary>
    public static void CompletionLogprobs(Utf8JsonWriter w, Tokenizer tokenizer, IReadOnlyList<GeneratedToken> tokens, int top, int textOffset)
    {
        w.WriteStartObject("logprobs");
        w.WriteStartArray("tokens");
        foreach (GeneratedToken t in tokens)
            w.WriteStringValue(TokenText(tokenizer, t.Token));
        w.WriteEndArray();
        w.WriteStartArray("token_logprobs");
        foreach (GeneratedToken t in tokens)
            w.WriteNumberValue(float.IsFinite(t.Logprob) ? t.Logprob : -9999f);
        w.WriteEndArray();
        w.WriteStartArray("top_logprobs");
        foreach (GeneratedToken t in tokens)
        {
            w.WriteStartObject();
            foreach (TokenLogprob alternative in t.TopLogprobs.Take(top))
                w.WriteNumber(TokenText(tokenizer, alternative.Token), float.IsFinite(alternative.Logprob) ? alternative.Logprob : -9999f);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("text_offset");
        int offset = textOffset;
        foreach (GeneratedToken t in tokens)
        {
            w.WriteNumberValue(offset);
            offset += TokenText(tokenizer, t.Token).Length;
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    public static string TokenText(Tokenizer tokenizer, int token) => Encoding.UTF8.GetString(TokenBytes(tokenizer, token));

    private static byte[] TokenBytes(Tokenizer tokenizer, int token)
    {
        Span<byte> buffer = stackalloc byte[Math.Max(256, tokenizer.MaxPieceBytes)];
        return buffer[..tokenizer.DecodeTokenBytes(token, buffer)].ToArray();
    }

    private static void TokenEntry(Utf8JsonWriter w, Tokenizer tokenizer, int token, float logprob)
    {
        byte[] bytes = TokenBytes(tokenizer, token);
        w.WriteString("token", Encoding.UTF8.GetString(bytes));
        w.WriteNumber("logprob", float.IsFinite(logprob) ? logprob : -9999f);
        w.WriteStartArray("bytes");
        foreach (byte b in bytes)
            w.WriteNumberValue(b);
        w.WriteEndArray();
    }
}
