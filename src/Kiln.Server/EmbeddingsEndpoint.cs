using Microsoft.AspNetCore.Http;

namespace Kiln.Server;

/// <summary>POST /v1/embeddings: the engine's mean-pooled, normalized final hidden state per input.</summary>
internal static class EmbeddingsEndpoint
{
    public static async Task HandleAsync(HttpContext context, ServedModel model, RequestTrace trace, CancellationToken cancellationToken)
    {
        using RequestBody body = await RequestBody.ReadAsync(context.Request, cancellationToken).ConfigureAwait(false);
        ModelsEndpoint.CheckModel(body, model);
        List<int[]> inputs = PromptInput.Read(body, "input", model.Engine.Tokenizer, addSpecial: true).Select(p => p.Ids).ToList();
        string format = body.String("encoding_format") ?? "float";
        if (format is not ("float" or "base64"))
            throw ApiException.BadField("encoding_format", "expected 'float' or 'base64'.");
        if (body.Integer("dimensions", 1, model.Engine.EmbeddingLength) is { } dimensions && dimensions != model.Engine.EmbeddingLength)
            throw ApiException.BadField("dimensions", $"this model's embeddings have {model.Engine.EmbeddingLength} dimensions.");
        foreach (int[] input in inputs)
        {
            if (input.Length > model.Engine.ContextLength)
                throw new ApiException(400, $"An input has {input.Length} tokens, more than the context of {model.Engine.ContextLength}.", param: "input", code: "context_length_exceeded");
        }
        trace.Id = "embd-" + Guid.NewGuid().ToString("N")[..24];
        trace.PromptTokens = inputs.Sum(i => i.Length);
        var vectors = await Task.WhenAll(inputs.Select(i => model.Engine.EmbedAsync(i, cancellationToken))).ConfigureAwait(false);
        await JsonResponses.WriteAsync(context.Response, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            for (int i = 0; i < vectors.Length; i++)
            {
                w.WriteStartObject();
                w.WriteString("object", "embedding");
                w.WriteNumber("index", i);
                if (format == "base64")
                {
                    w.WriteString("embedding", Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(vectors[i].AsSpan())));
                }
                else
                {
                    w.WriteStartArray("embedding");
                    foreach (float v in vectors[i])
                        w.WriteNumberValue(v);
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString("model", model.Engine.ModelName);
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", trace.PromptTokens);
            w.WriteNumber("total_tokens", trace.PromptTokens);
            w.WriteEndObject();
            w.WriteEndObject();
        }, cancellationToken).ConfigureAwait(false);
    }
}
