using System.Text;
using System.Text.Json;
using Kiln.Formats.Gguf;
using System.Text.Json.Nodes;

namespace Kiln.Training.Data;

/// <summary>
/// Character-level tokenizer (nanoGPT's shakespeare_char): one id per distinct Unicode code point of the training
/// text, in code-point order, after three reserved ids 0, 1, 2 for unknown, begin and end of text. The reserved ids
/// never occur in the data; they exist because a GGUF SentencePiece vocabulary gives ids 0/1/2 those roles when the
/// file names none, so an exported model must not use them for characters. Saved as {"type":"char","symbols":[…]}.
/// </summary>
public sealed class CharacterTokenizer : TrainingTokenizer
{
    private readonly string[] _symbols;
    private readonly Dictionary<int, int> _ids;

    public CharacterTokenizer(IEnumerable<string> symbols)
    {
        _symbols = symbols.ToArray();
        _ids = new Dictionary<int, int>(_symbols.Length);
        for (int i = 0; i < _symbols.Length; i++)
        {
            if (!Rune.TryGetRuneAt(_symbols[i], 0, out var rune) || rune.Utf16SequenceLength != _symbols[i].Length)
                throw new InvalidDataException($"symbol {i} is not a single character");
            if (!_ids.TryAdd(rune.Value, ReservedIds + i))
                throw new InvalidDataException($"symbol {i} ('{_symbols[i]}') appears twice");
        }
    }

    /// <summary>Ids before the first character: unknown, begin of text, end of text.</summary>
    public const int ReservedIds = 3;

    public override int VocabSize => ReservedIds + _symbols.Length;
    public IReadOnlyList<string> Symbols => _symbols;

    public static CharacterTokenizer FromText(string text) =>
        new(text.EnumerateRunes().Select(r => r.Value).Distinct().Order().Select(v => new Rune(v).ToString()));

    public override int[] Encode(string text)
    {
        var ids = new List<int>(text.Length);
        foreach (var rune in text.EnumerateRunes())
        {
            if (!_ids.TryGetValue(rune.Value, out int id))
                throw new InvalidDataException($"character U+{rune.Value:X4} is not in the tokenizer's vocabulary");
            ids.Add(id);
        }
        return [.. ids];
    }

    public override string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new StringBuilder(ids.Length);
        foreach (int id in ids)
            sb.Append((uint)(id - ReservedIds) < (uint)_symbols.Length ? _symbols[id - ReservedIds] : id is >= 0 and < ReservedIds ? "" : "\uFFFD");
        return sb.ToString();
    }

    public override string ToJson() =>
        new JsonObject { ["type"] = "char", ["symbols"] = new JsonArray(_symbols.Select(s => (JsonNode)s).ToArray()) }.ToJsonString();

    public static new CharacterTokenizer Load(string path) =>
        TrainingTokenizer.Load(path) as CharacterTokenizer ?? throw new InvalidDataException($"{path} is not a character tokenizer");

    internal static CharacterTokenizer FromJson(JsonNode root, string path)
    {
        var symbols = root["symbols"]?.AsArray().Select(n => n?.GetValue<string>() ?? "").ToArray()
            ?? throw new InvalidDataException($"{path}: missing symbols");
        return new CharacterTokenizer(symbols);
    }

    public override int SampleStartId => _ids.TryGetValue('\n', out int id) ? id : ReservedIds;

    /// <summary>
    /// Bytes whose byte-fallback token "&lt;0xNN&gt;" the GGUF vocabulary must carry: llama.cpp's SentencePiece
    /// tokenizer (llama-vocab.cpp, llm_tokenizer_spm_session::resegment) spells a character that is not a token as
    /// its UTF-8 bytes through llama_vocab::byte_to_token, which looks up "&lt;0xNN&gt;", then the byte as a
    /// one-character token, and throws (std::out_of_range, uncaught by llama_tokenize) when neither exists. Bytes
    /// that are one-character tokens already (ASCII characters of the vocabulary) need none.
    /// </summary>
    public IReadOnlyList<int> ByteFallbackBytes =>
        [.. Enumerable.Range(0, 256).Where(b => b >= 0x80 || b == ' ' || !_ids.ContainsKey(b))];

    public override int GgufExtraTokens => ByteFallbackBytes.Count;

    public override int GgufExtraTokenRow => 0; // <unk>

    /// <summary>
    /// A SentencePiece-style vocabulary: unk, BOS, EOS, then the characters with space as "▁", unused placeholders up
    /// to the model's vocabulary, then byte-fallback tokens (type BYTE); no BOS added, no space prefix.
    /// </summary>
    public override void WriteGgufMetadata(GgufWriter w, int modelVocab)
    {
        if (_ids.ContainsKey('\u2581'))
            throw new InvalidDataException("the character vocabulary holds U+2581 '▁', which a SentencePiece vocabulary uses for the space: it would appear twice");
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 }; // unknown, control, control
        foreach (string s in _symbols)
        {
            tokens.Add(s == " " ? "\u2581" : s);
            types.Add(1);
        }
        for (int i = tokens.Count; i < modelVocab; i++)
        {
            tokens.Add($"<unused{i}>");
            types.Add(5);
        }
        foreach (int b in ByteFallbackBytes)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(6); // byte
        }
        w.SetMetadata("tokenizer.ggml.model", GgufValue.FromString("llama"));
        w.SetMetadata("tokenizer.ggml.tokens", GgufValue.FromArray(GgufArray.Of(tokens.ToArray())));
        w.SetMetadata("tokenizer.ggml.scores", GgufValue.FromArray(GgufArray.Of(new float[tokens.Count])));
        w.SetMetadata("tokenizer.ggml.token_type", GgufValue.FromArray(GgufArray.Of(types.ToArray())));
        w.SetMetadata("tokenizer.ggml.unknown_token_id", GgufValue.FromUInt32(0));
        w.SetMetadata("tokenizer.ggml.bos_token_id", GgufValue.FromUInt32(1));
        w.SetMetadata("tokenizer.ggml.eos_token_id", GgufValue.FromUInt32(2));
        w.SetMetadata("tokenizer.ggml.add_bos_token", GgufValue.FromBool(false));
        w.SetMetadata("tokenizer.ggml.add_space_prefix", GgufValue.FromBool(false));
    }
}
