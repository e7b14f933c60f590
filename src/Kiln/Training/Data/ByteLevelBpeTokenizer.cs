using System.Text.Json.Nodes;
using Kiln.Formats.Gguf;
using Kiln.Tokenizers;

namespace Kiln.Training.Data;

/// <summary>
/// A byte-level BPE vocabulary in GPT-2's form (tokens spelled in the byte-to-unicode alphabet, merges as
/// "left right", GPT-2 pre-tokenizer), as <see cref="BytePairVocabularyTrainer"/> makes it. Encoding and decoding go
/// through Kiln's own <see cref="Tokenizer"/> built from the same data a GGUF will carry, so training data and
/// inference tokenize identically. The last token is "&lt;|endoftext|&gt;" (BOS and EOS, never added).
/// Saved as {"type":"bpe","pre":"gpt-2","tokens":[…],"merges":[…]}.
/// </summary>
public sealed class ByteLevelBpeTokenizer : TrainingTokenizer
{
    public const string EndOfText = "<|endoftext|>";
    public const string PreTokenizer = "gpt-2";

    private readonly string[] _tokens;
    private readonly string[] _merges;
    private readonly Tokenizer _tokenizer;

    public ByteLevelBpeTokenizer(IReadOnlyList<string> tokens, IReadOnlyList<string> merges)
    {
        if (tokens.Count == 0 || tokens[^1] != EndOfText)
            throw new InvalidDataException($"a byte-level BPE vocabulary here ends with {EndOfText}");
        _tokens = [.. tokens];
        _merges = [.. merges];
        _tokenizer = Tokenizer.Create(Data(_tokens.Length));
    }

    public IReadOnlyList<string> Tokens => _tokens;
    public IReadOnlyList<string> Merges => _merges;
    public int EndOfTextId => _tokens.Length - 1;
    public override int VocabSize => _tokens.Length;

    private int[] TokenTypes(int count)
    {
        var types = new int[count];
        for (int i = 0; i < count; i++)
            types[i] = i < EndOfTextId ? 1 : i == EndOfTextId ? 3 : 5; // normal, control, unused placeholders
        return types;
    }

    private TokenizerData Data(int count) => new()
    {
        Model = "gpt2",
        Pre = PreTokenizer,
        Tokens = [.. _tokens, .. Enumerable.Range(_tokens.Length, count - _tokens.Length).Select(i => $"<unused{i}>")],
        TokenTypes = TokenTypes(count),
        Merges = _merges,
        BosId = EndOfTextId,
        EosId = EndOfTextId,
        AddBos = false,
        AddEos = false,
    };

    public override int[] Encode(string text) => _tokenizer.Encode(text, addSpecial: false);

    public override string Decode(ReadOnlySpan<int> ids) => _tokenizer.Decode(ids);

    public override int SampleStartId => _tokenizer.Encode("\n", addSpecial: false) is [var nl] ? nl : EndOfTextId;

    public override string ToJson() => new JsonObject
    {
        ["type"] = "bpe",
        ["pre"] = PreTokenizer,
        ["tokens"] = new JsonArray(_tokens.Select(t => (JsonNode)t).ToArray()),
        ["merges"] = new JsonArray(_merges.Select(m => (JsonNode)m).ToArray()),
    }.ToJsonString();

    internal static ByteLevelBpeTokenizer FromJson(JsonNode root, string path)
    {
        string? pre = root["pre"]?.GetValue<string>();
        if (pre != PreTokenizer)
            throw new InvalidDataException($"{path}: pre-tokenizer '{pre}' is not supported ({PreTokenizer})");
        var tokens = root["tokens"]?.AsArray().Select(n => n?.GetValue<string>() ?? "").ToArray()
            ?? throw new InvalidDataException($"{path}: missing tokens");
        var merges = root["merges"]?.AsArray().Select(n => n?.GetValue<string>() ?? "").ToArray()
            ?? throw new InvalidDataException($"{path}: missing merges");
        return new ByteLevelBpeTokenizer(tokens, merges);
    }

    /// <summary>tokenizer.ggml.model "gpt2" with pre "gpt-2", tokens, types and merges; BOS = EOS = &lt;|endoftext|&gt;, not added.</summary>
    public override void WriteGgufMetadata(GgufWriter w, int modelVocab)
    {
        var data = Data(Math.Max(modelVocab, _tokens.Length));
        w.SetMetadata("tokenizer.ggml.model", GgufValue.FromString("gpt2"));
        w.SetMetadata("tokenizer.ggml.pre", GgufValue.FromString(PreTokenizer));
        w.SetMetadata("tokenizer.ggml.tokens", GgufValue.FromArray(GgufArray.Of(data.Tokens.ToArray())));
        w.SetMetadata("tokenizer.ggml.token_type", GgufValue.FromArray(GgufArray.Of(data.TokenTypes!.ToArray())));
        w.SetMetadata("tokenizer.ggml.merges", GgufValue.FromArray(GgufArray.Of(_merges)));
        w.SetMetadata("tokenizer.ggml.bos_token_id", GgufValue.FromUInt32((uint)EndOfTextId));
        w.SetMetadata("tokenizer.ggml.eos_token_id", GgufValue.FromUInt32((uint)EndOfTextId));
        w.SetMetadata("tokenizer.ggml.add_bos_token", GgufValue.FromBool(false));
    }
}
