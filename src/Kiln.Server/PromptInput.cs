using System.Text.Json;
using Kiln.Tokenizers;

namespace Kiln.Server;

/// <summary>Reads OpenAI's prompt/input field: a string, a list of strings, a list of token ids, or a list of such lists; the text is kept for echo.</summary>
internal static class PromptInput
{
    public static List<(int[] Ids, string? Text)> Read(RequestBody body, string field, Tokenizer tokenizer, bool addSpecial)
    {
        if (body.Get(field) is not { } value)
            throw new ApiException(400, $"'{field}' is required.", param: field, code: "missing_required_parameter");
        var prompts = new List<(int[] Ids, string? Text)>();
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                prompts.Add((tokenizer.Encode(value.GetString()!, addSpecial), value.GetString()));
                break;
            case JsonValueKind.Array when value.GetArrayLength() > 0 && value[0].ValueKind == JsonValueKind.Number:
                prompts.Add((ReadIds(value, field, tokenizer), null));
                break;
            case JsonValueKind.Array when value.GetArrayLength() > 0:
                int i = 0;
                foreach (JsonElement item in value.EnumerateArray())
                {
                    if (item.ValueKind == JsonValueKind.String)
                        prompts.Add((tokenizer.Encode(item.GetString()!, addSpecial), item.GetString()));
                    else if (item.ValueKind == JsonValueKind.Array)
                        prompts.Add((ReadIds(item, $"{field}[{i}]", tokenizer), null));
                    else
                        throw ApiException.BadField($"{field}[{i}]", "expected a string or an array of token ids.");
                    i++;
                }
                break;
            default:
                throw ApiException.BadField(field, "expected a string, an array of strings, or token ids.");
        }
        if (prompts.Any(p => p.Ids.Length == 0))
            throw ApiException.BadField(field, "a prompt must not be empty.");
        return prompts;
    }

    public static int[] ReadIds(JsonElement array, string field, Tokenizer tokenizer)
    {
        if (array.ValueKind != JsonValueKind.Array)
            throw ApiException.BadField(field, "expected an array of token ids.");
        var ids = new int[array.GetArrayLength()];
        int i = 0;
        foreach (JsonElement id in array.EnumerateArray())
        {
            if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int token) || token < 0 || token >= tokenizer.VocabSize)
                throw ApiException.BadField(field, $"token ids must be integers in [0, {tokenizer.VocabSize}).");
            ids[i++] = token;
        }
        return ids;
    }
}
