using Kiln.Formats.Gguf;

namespace Kiln.Tokenizers;

/// <summary>Collects the <c>tokenizer.ggml.*</c> metadata of a GGUF file into a <see cref="TokenizerData"/>.</summary>
internal static class GgufTokenizerReader
{
    private const string Prefix = "tokenizer.ggml.";

    public static TokenizerData Read(GgufFile file)
    {
        string model = file.TryGetString(Prefix + "model")
            ?? throw new NotSupportedException("the file has no tokenizer (tokenizer.ggml.model is missing)");
        if (model is not ("llama" or "gpt2"))
            throw new NotSupportedException(
                $"tokenizer model '{model}' is not supported; Kiln supports 'llama' (SentencePiece) and 'gpt2' (byte-level BPE)");

        GgufArray tokens = file.TryGetArray(Prefix + "tokens")
            ?? throw new InvalidDataException("tokenizer.ggml.tokens is missing");
        if (tokens.ElementType != GgufValueType.String || tokens.Items is not string[] tokenTexts)
            throw new InvalidDataException($"tokenizer.ggml.tokens must be an array of strings, not of {tokens.ElementTypeName}");

        IReadOnlyList<float>? scores = null;
        if (file.TryGetArray(Prefix + "scores") is { } scoreArray)
        {
            // Dispatch on the stored type: the CLR lets a uint[] pass a test for int[].
            scores = scoreArray.ElementType switch
            {
                GgufValueType.Float32 => (float[])scoreArray.Items,
                GgufValueType.Int32 => Array.ConvertAll((int[])scoreArray.Items, v => (float)v),
                _ => throw new InvalidDataException($"tokenizer.ggml.scores must be float32 or int32, not {scoreArray.ElementTypeName}"),
            };
        }

        IReadOnlyList<int>? types = null;
        if (file.TryGetArray(Prefix + "token_type") is { } typeArray)
        {
            if (typeArray.ElementType != GgufValueType.Int32)
                throw new InvalidDataException($"tokenizer.ggml.token_type must be int32, not {typeArray.ElementTypeName}");
            types = (int[])typeArray.Items;
        }

        IReadOnlyList<string>? merges = null;
        if (file.TryGetArray(Prefix + "merges") is { } mergeArray)
        {
            if (mergeArray.ElementType != GgufValueType.String)
                throw new InvalidDataException($"tokenizer.ggml.merges must be an array of strings, not of {mergeArray.ElementTypeName}");
            merges = (string[])mergeArray.Items;
        }

        return new TokenizerData
        {
            Model = model,
            Pre = file.TryGetString(Prefix + "pre"),
            Tokens = tokenTexts,
            Scores = scores,
            TokenTypes = types,
            Merges = merges,
            BosId = file.TryGetInteger(Prefix + "bos_token_id"),
            EosId = file.TryGetInteger(Prefix + "eos_token_id"),
            EotId = file.TryGetInteger(Prefix + "eot_token_id"),
            EomId = file.TryGetInteger(Prefix + "eom_token_id"),
            UnknownId = file.TryGetInteger(Prefix + "unknown_token_id"),
            SeparatorId = file.TryGetInteger(Prefix + "seperator_token_id"),
            PadId = file.TryGetInteger(Prefix + "padding_token_id"),
            MaskId = file.TryGetInteger(Prefix + "mask_token_id"),
            FimPrefixId = file.TryGetInteger(Prefix + "fim_pre_token_id") ?? file.TryGetInteger(Prefix + "prefix_token_id"),
            FimSuffixId = file.TryGetInteger(Prefix + "fim_suf_token_id") ?? file.TryGetInteger(Prefix + "suffix_token_id"),
            FimMiddleId = file.TryGetInteger(Prefix + "fim_mid_token_id") ?? file.TryGetInteger(Prefix + "middle_token_id"),
            FimPadId = file.TryGetInteger(Prefix + "fim_pad_token_id"),
            FimRepoId = file.TryGetInteger(Prefix + "fim_rep_token_id"),
            FimSeparatorId = file.TryGetInteger(Prefix + "fim_sep_token_id"),
            AddBos = file.TryGetBool(Prefix + "add_bos_token"),
            AddEos = file.TryGetBool(Prefix + "add_eos_token"),
            AddSpacePrefix = file.TryGetBool(Prefix + "add_space_prefix"),
            ModelName = file.TryGetString("general.name"),
        };
    }
}
