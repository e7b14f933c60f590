using Microsoft.AspNetCore.Http;

namespace Kiln.Server;

/// <summary>POST /tokenize and POST /detokenize, in llama.cpp server's shapes.</summary>
internal static class TokenizerEndpoints
{
    public static async Task TokenizeAsync(HttpContext context, ServedModel model, CancellationToken cancellationToken)
    {
        using RequestBody body = await RequestBody.ReadAsync(context.Request, cancellationToken).ConfigureAwait(false);
        string content = body.String("content") ?? throw new ApiException(400, "'content' is required.", param: "content", code: "missing_required_parameter");
        bool addSpecial = body.Bool("add_special") ?? false;
        bool parseSpecial = body.Bool("parse_special") ?? true;
        bool withPieces = body.Bool("with_pieces") ?? false;
        var tokenizer = model.Engine.Tokenizer;
        int[] tokens = tokenizer.Encode(content, addSpecial, parseSpecial);
        await JsonResponses.WriteAsync(context.Response, 200, w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("tokens");
            foreach (int token in tokens)
            {
                if (withPieces)
                {
                    w.WriteStartObject();
                    w.WriteNumber("id", token);
                    w.WriteString("piece", JsonResponses.TokenText(tokenizer, token));
                    w.WriteEndObject();
                }
                else
                {
                    w.WriteNumberValue(token);
                }
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }, cancellationToken).ConfigureAwait(false);
    }

    public static async Task DetokenizeAsync(HttpContext context, ServedModel model, CancellationToken cancellationToken)
    {
        using RequestBody body = await RequestBody.ReadAsync(context.Request, cancellationToken).ConfigureAwait(false);
        if (body.Get("tokens") is not { } tokens)
            throw new ApiException(400, "'tokens' is required.", param: "tokens", code: "missing_required_parameter");
        int[] ids = PromptInput.ReadIds(tokens, "tokens", model.Engine.Tokenizer);
        string content = model.Engine.Tokenizer.Decode(ids);
        await JsonResponses.WriteAsync(context.Response, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("content", content);
            w.WriteEndObject();
        }, cancellationToken).ConfigureAwait(false);
    }
}
